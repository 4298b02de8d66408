//! Lenient unsigned integers for request fields: JSON Schema (and so OpenAPI) counts `2.0`
//! as an integer, and so do many clients' serialisers, while serde does not. These accept
//! any JSON number that is a whole value in range (and, for path and query parameters, its
//! text), and refuse the rest with a message serde puts after the field's name.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, Unexpected, Visitor};

/// The unsigned types read leniently.
pub trait Whole: TryFrom<u64> {
    /// The largest value.
    const MAX: u64;
}

impl Whole for u32 {
    const MAX: u64 = u32::MAX as u64;
}

impl Whole for u64 {
    const MAX: u64 = u64::MAX;
}

/// A `T` read leniently.
#[derive(Debug, Clone, Copy)]
pub struct Uint<T>(pub T);

struct UintVisitor<T>(PhantomData<T>);

impl<T: Whole> UintVisitor<T> {
    fn fit<E: de::Error>(&self, v: u64) -> Result<T, E> {
        T::try_from(v).map_err(|_| E::invalid_value(Unexpected::Unsigned(v), self))
    }
}

impl<T: Whole> Visitor<'_> for UintVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a whole number from 0 to {}", T::MAX)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        self.fit(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        match u64::try_from(v) {
            Ok(v) => self.fit(v),
            Err(_) => Err(E::invalid_value(Unexpected::Signed(v), &self)),
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        // 2^64 is exactly representable; anything below it and whole fits a u64.
        if v.fract() == 0.0 && (0.0..18_446_744_073_709_551_616.0).contains(&v) {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            self.fit(v as u64)
        } else {
            Err(E::invalid_value(Unexpected::Float(v), &self))
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        if let Ok(n) = v.parse::<u64>() {
            return self.fit(n);
        }
        match v.parse::<f64>() {
            Ok(f) if f.is_finite() => self.visit_f64(f),
            _ => Err(E::invalid_value(Unexpected::Str(v), &self)),
        }
    }
}

impl<'de, T: Whole> Deserialize<'de> for Uint<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UintVisitor(PhantomData)).map(Uint)
    }
}

/// For `#[serde(deserialize_with)]` on a `u32`/`u64` field.
pub fn one<'de, D: Deserializer<'de>, T: Whole>(d: D) -> Result<T, D::Error> {
    Uint::<T>::deserialize(d).map(|u| u.0)
}

/// For an `Option<u32>` field.
pub fn option<'de, D: Deserializer<'de>, T: Whole>(d: D) -> Result<Option<T>, D::Error> {
    Option::<Uint<T>>::deserialize(d).map(|o| o.map(|u| u.0))
}

/// For a `Vec<u32>` field.
pub fn list<'de, D: Deserializer<'de>, T: Whole>(d: D) -> Result<Vec<T>, D::Error> {
    Vec::<Uint<T>>::deserialize(d).map(|v| v.into_iter().map(|u| u.0).collect())
}
