//! How the trial types travel to and from SQL: a status as its text form (the `status` column's
//! CHECK lists the same words), ids and leases as integers. One set of impls serves SQLite and
//! PostgreSQL, as both are reached through sqlx's `Any` driver.

use crate::trial::{Lease, TrialId, TrialStatus};
use sqlx::any::{Any, AnyTypeInfo, AnyValueRef};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::{Database, Decode, Encode, Type};

impl Type<Any> for TrialStatus {
    fn type_info() -> AnyTypeInfo {
        <&str as Type<Any>>::type_info()
    }

    fn compatible(ty: &AnyTypeInfo) -> bool {
        <&str as Type<Any>>::compatible(ty)
    }
}

impl<'q> Encode<'q, Any> for TrialStatus {
    fn encode_by_ref(
        &self,
        buf: &mut <Any as Database>::ArgumentBuffer<'q>,
    ) -> Result<IsNull, BoxDynError> {
        <&str as Encode<'q, Any>>::encode_by_ref(&self.as_str(), buf)
    }
}

impl<'r> Decode<'r, Any> for TrialStatus {
    fn decode(value: AnyValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(<&str as Decode<'r, Any>>::decode(value)?.parse()?)
    }
}

/// Ids and leases are integers in SQL.
macro_rules! integer_column {
    ($ty:ident) => {
        impl Type<Any> for $ty {
            fn type_info() -> AnyTypeInfo {
                <i64 as Type<Any>>::type_info()
            }

            fn compatible(ty: &AnyTypeInfo) -> bool {
                <i64 as Type<Any>>::compatible(ty)
            }
        }

        impl<'q> Encode<'q, Any> for $ty {
            fn encode_by_ref(
                &self,
                buf: &mut <Any as Database>::ArgumentBuffer<'q>,
            ) -> Result<IsNull, BoxDynError> {
                <i64 as Encode<'q, Any>>::encode_by_ref(&self.0, buf)
            }
        }

        impl<'r> Decode<'r, Any> for $ty {
            fn decode(value: AnyValueRef<'r>) -> Result<Self, BoxDynError> {
                Ok($ty(<i64 as Decode<'r, Any>>::decode(value)?))
            }
        }
    };
}

integer_column!(TrialId);
integer_column!(Lease);
