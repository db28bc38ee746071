//! A grid axis: one value or a list of values, so `lr = 0.01` and `lr = [0.01, 0.1]` both work.

use serde::de::{self, Deserializer, IntoDeserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;
use std::marker::PhantomData;

/// The values one grid axis takes; a scalar in the file is a one-element axis.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis<T>(pub Vec<T>);

impl<T> Axis<T> {
    /// An axis with a single value.
    pub fn one(value: T) -> Self {
        Axis(vec![value])
    }

    /// The values in file order.
    pub fn values(&self) -> &[T] {
        &self.0
    }
}

impl<T: Serialize> Serialize for Axis<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

struct AxisVisitor<T>(PhantomData<T>);

// Scalars are handed to T's own Deserialize so its error text ("unknown variant `x`, expected
// one of ...") reaches the user instead of serde's opaque "did not match any variant".
macro_rules! forward_scalar {
    ($($method:ident: $ty:ty),*) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<Self::Value, E> {
            T::deserialize(v.into_deserializer()).map(Axis::one)
        }
    )*};
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for AxisVisitor<T> {
    type Value = Axis<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a value or a list of values")
    }

    forward_scalar!(visit_bool: bool, visit_i64: i64, visit_u64: u64, visit_f64: f64, visit_string: String);

    fn visit_i8<E: de::Error>(self, v: i8) -> Result<Self::Value, E> {
        self.visit_i64(v as i64)
    }
    fn visit_i32<E: de::Error>(self, v: i32) -> Result<Self::Value, E> {
        self.visit_i64(v as i64)
    }
    fn visit_u8<E: de::Error>(self, v: u8) -> Result<Self::Value, E> {
        self.visit_u64(v as u64)
    }
    fn visit_u32<E: de::Error>(self, v: u32) -> Result<Self::Value, E> {
        self.visit_u64(v as u64)
    }
    fn visit_f32<E: de::Error>(self, v: f32) -> Result<Self::Value, E> {
        self.visit_f64(v as f64)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        self.visit_string(v.to_owned())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut values = Vec::new();
        while let Some(value) = seq.next_element()? {
            values.push(value);
        }
        Ok(Axis(values))
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Axis<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(AxisVisitor(PhantomData))
    }
}
