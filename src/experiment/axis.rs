//! A search axis: one value, a list of values (a choice), or a distribution to draw from, so
//! `lr = 0.01`, `lr = [0.01, 0.1]` and `lr = { log_uniform = [1e-4, 1e-1] }` all work.

use serde::de::{self, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;
use std::marker::PhantomData;

/// The values one axis takes: listed (a scalar in the file is a one-element list), or drawn
/// from a distribution by a searching sampler.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis<T> {
    values: Vec<T>,
    distribution: Option<Distribution>,
}

/// The kinds of distribution an axis can be drawn from; bounds are inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DistributionKind {
    /// Any real number in `[low, high]`, evenly.
    Uniform,
    /// Any real number in `[low, high]`, evenly in its logarithm.
    LogUniform,
    /// Any integer in `[low, high]`, evenly.
    IntUniform,
    /// Any integer in `[low, high]`, evenly in its logarithm.
    IntLogUniform,
}

impl DistributionKind {
    const ALL: [DistributionKind; 4] = [
        DistributionKind::Uniform,
        DistributionKind::LogUniform,
        DistributionKind::IntUniform,
        DistributionKind::IntLogUniform,
    ];

    /// The name in experiment files.
    pub fn as_str(self) -> &'static str {
        match self {
            DistributionKind::Uniform => "uniform",
            DistributionKind::LogUniform => "log_uniform",
            DistributionKind::IntUniform => "int_uniform",
            DistributionKind::IntLogUniform => "int_log_uniform",
        }
    }

    /// Whether it draws integers.
    pub fn is_int(self) -> bool {
        matches!(
            self,
            DistributionKind::IntUniform | DistributionKind::IntLogUniform
        )
    }

    /// Whether it draws evenly in the logarithm.
    pub fn is_log(self) -> bool {
        matches!(
            self,
            DistributionKind::LogUniform | DistributionKind::IntLogUniform
        )
    }
}

/// A distribution an axis is drawn from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Distribution {
    /// Its shape.
    pub kind: DistributionKind,
    /// Smallest value (inclusive).
    pub low: f64,
    /// Largest value (inclusive).
    pub high: f64,
}

impl Distribution {
    /// What is wrong with the bounds, if anything.
    pub fn problem(&self) -> Option<String> {
        let (low, high) = (self.low, self.high);
        if !low.is_finite() || !high.is_finite() {
            Some("bounds must be finite numbers".into())
        } else if low >= high {
            Some(format!("low ({low}) must be below high ({high})"))
        } else if self.kind.is_log() && low <= 0.0 {
            Some(format!(
                "a log distribution needs bounds above 0 (low is {low})"
            ))
        } else if self.kind.is_int() && (low.fract() != 0.0 || high.fract() != 0.0) {
            Some(format!(
                "an integer distribution needs whole-number bounds ({low}, {high})"
            ))
        } else {
            None
        }
    }
}

impl fmt::Display for Distribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{}, {}]", self.kind.as_str(), self.low, self.high)
    }
}

impl<T> Axis<T> {
    /// An axis with a single value.
    pub fn one(value: T) -> Self {
        Axis::list(vec![value])
    }

    /// An axis listing `values`.
    pub fn list(values: Vec<T>) -> Self {
        Axis {
            values,
            distribution: None,
        }
    }

    /// An axis drawn from `distribution`.
    pub fn drawn(distribution: Distribution) -> Self {
        Axis {
            values: Vec::new(),
            distribution: Some(distribution),
        }
    }

    /// The listed values in file order (none when the axis is a distribution).
    pub fn values(&self) -> &[T] {
        &self.values
    }

    /// The distribution the axis is drawn from, if it is one.
    pub fn distribution(&self) -> Option<&Distribution> {
        self.distribution.as_ref()
    }
}

impl<T: Serialize> Serialize for Axis<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.distribution {
            None => self.values.serialize(serializer),
            Some(d) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry(d.kind.as_str(), &[d.low, d.high])?;
                map.end()
            }
        }
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
        f.write_str(
            "a value, a list of values, or a distribution such as { log_uniform = [1e-4, 0.1] }",
        )
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
        Ok(Axis::list(values))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let Some(name) = map.next_key::<String>()? else {
            return Err(de::Error::custom(
                "an empty table is not a distribution: write e.g. { uniform = [0.0, 0.5] }",
            ));
        };
        let kind = DistributionKind::ALL
            .into_iter()
            .find(|k| k.as_str() == name)
            .ok_or_else(|| {
                de::Error::custom(format!(
                    "unknown distribution `{name}`: use uniform, log_uniform, int_uniform or \
                     int_log_uniform"
                ))
            })?;
        let bounds: Vec<f64> = map.next_value()?;
        let [low, high] = bounds[..] else {
            return Err(de::Error::custom(format!(
                "{name} takes two bounds, [low, high]; got {} values",
                bounds.len()
            )));
        };
        if map.next_key::<String>()?.is_some() {
            return Err(de::Error::custom(
                "a distribution table names one distribution, e.g. { uniform = [0.0, 0.5] }",
            ));
        }
        Ok(Axis::drawn(Distribution { kind, low, high }))
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Axis<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(AxisVisitor(PhantomData))
    }
}
