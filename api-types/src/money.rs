//! Money on the wire: [`Usd`], an amount in integer nano-USD (1 USD = 1_000_000_000) that
//! is written as an exact decimal string ("5.00", "0.00015") and read from a string or a
//! JSON number, plus the formatting and parsing rules every other crate uses.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Nano-USD per USD.
pub const NANOS_PER_USD: i64 = 1_000_000_000;

/// The largest amount accepted, in whole USD (either sign).
const MAX_WHOLE_USD: i64 = 9_000_000_000;

/// Why a decimal USD amount was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseUsdError(pub String);

impl fmt::Display for ParseUsdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid USD amount: {:?}", self.0)
    }
}

impl std::error::Error for ParseUsdError {}

/// An amount of money in nano-USD. On the wire: an exact decimal string with at least two
/// decimals and no trailing zeros beyond them (`"5.00"`, `"0.00015"`, `"-1.50"`); read
/// from such a string or from a JSON number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Usd(pub i64);

impl Usd {
    /// Zero dollars.
    pub const ZERO: Usd = Usd(0);

    /// The amount in nano-USD.
    pub fn nanos(self) -> i64 {
        self.0
    }

    /// Whole USD, exactly.
    pub fn from_usd(usd: i64) -> Option<Usd> {
        usd.checked_mul(NANOS_PER_USD).map(Usd)
    }

    /// Rounded to `decimals` decimals, for display ("5.00" with 2).
    pub fn rounded(self, decimals: u32) -> String {
        format_usd(self.0, decimals)
    }
}

impl fmt::Display for Usd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_exact(self.0))
    }
}

impl std::str::FromStr for Usd {
    type Err = ParseUsdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_usd(s).map(Usd)
    }
}

impl Serialize for Usd {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_exact(self.0))
    }
}

impl<'de> Deserialize<'de> for Usd {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Usd;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a USD amount as a decimal string (\"5.00\") or a number")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Usd, E> {
                parse_usd(v).map(Usd).map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Usd, E> {
                parse_usd(&v.to_string()).map(Usd).map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Usd, E> {
                parse_usd(&v.to_string()).map(Usd).map_err(E::custom)
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Usd, E> {
                // The shortest text that reads back as this float ("0.1", not 0.1000000000000000055…).
                parse_usd(&v.to_string()).map(Usd).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Usd {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
        Schema::Object(
            ObjectBuilder::new()
                .schema_type(SchemaType::new(Type::String))
                .description(Some(
                    "USD as an exact decimal string (at least two decimals, up to nine). \
                     Requests also accept a JSON number.",
                ))
                .pattern(Some(r"^-?[0-9]{1,10}(\.[0-9]{1,9})?$"))
                .examples([serde_json::json!("5.00")])
                .build(),
        )
        .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Usd {}

/// Parses a decimal USD amount ("5", "5.0", "0.000150", "-1.5") into nano-USD.
/// More than nine decimals, exponents, or values beyond ±9 billion USD are refused.
pub fn parse_usd(input: &str) -> Result<i64, ParseUsdError> {
    let s = input.trim();
    let bad = || ParseUsdError(input.to_string());
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && frac.is_empty() {
        return Err(bad());
    }
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    if frac.len() > 9 || whole.len() > 10 {
        return Err(bad());
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| bad())?
    };
    let mut frac_nanos: i64 = 0;
    for (i, b) in frac.bytes().enumerate() {
        frac_nanos += i64::from(b - b'0') * 10_i64.pow(8 - i as u32);
    }
    let total = whole
        .checked_mul(NANOS_PER_USD)
        .and_then(|w| w.checked_add(frac_nanos))
        .filter(|v| *v <= MAX_WHOLE_USD * NANOS_PER_USD)
        .ok_or_else(bad)?;
    Ok(if neg { -total } else { total })
}

/// Formats nano-USD with exactly `decimals` decimals (0..=9), rounding half away from zero.
pub fn format_usd(nanos: i64, decimals: u32) -> String {
    let decimals = decimals.min(9);
    let unit = 10_i128.pow(9 - decimals);
    let v = i128::from(nanos);
    let rounded = if v >= 0 {
        (v + unit / 2) / unit
    } else {
        (v - unit / 2) / unit
    };
    let neg = rounded < 0;
    let abs = rounded.unsigned_abs();
    let scale = 10_u128.pow(decimals);
    let sign = if neg { "-" } else { "" };
    if decimals == 0 {
        format!("{sign}{abs}")
    } else {
        format!(
            "{sign}{}.{:0width$}",
            abs / scale,
            abs % scale,
            width = decimals as usize
        )
    }
}

/// Formats a value exactly, trimming trailing zeros but keeping at least two decimals
/// ("0.00015", "5.00", "0.000000001"): the wire form of [`Usd`].
pub fn format_exact(nanos: i64) -> String {
    let full = format_usd(nanos, 9);
    let (whole, frac) = full.split_once('.').unwrap_or((&full, ""));
    let trimmed = frac.trim_end_matches('0');
    let frac = if trimmed.len() < 2 {
        &frac[..2]
    } else {
        trimmed
    };
    format!("{whole}.{frac}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form_is_exact_and_round_trips() {
        for (nanos, text) in [
            (0, "0.00"),
            (5 * NANOS_PER_USD, "5.00"),
            (150_000, "0.00015"),
            (1, "0.000000001"),
            (-1_500_000_000, "-1.50"),
            (4_999_850_000, "4.99985"),
        ] {
            let json = serde_json::to_string(&Usd(nanos)).unwrap();
            assert_eq!(json, format!("\"{text}\""));
            let back: Usd = serde_json::from_str(&json).unwrap();
            assert_eq!(back, Usd(nanos), "{text}");
        }
    }

    #[test]
    fn reads_numbers_and_refuses_garbage() {
        let n: Result<Usd, _> = serde_json::from_str("5.5");
        assert_eq!(n.ok(), Some(Usd(5_500_000_000)));
        let n: Result<Usd, _> = serde_json::from_str("12");
        assert_eq!(n.ok(), Some(Usd(12 * NANOS_PER_USD)));
        for bad in [
            "\"1e3\"",
            "\"0.0000000001\"",
            "\"abc\"",
            "\"\"",
            "null",
            "true",
            "[]",
            "\"99999999999\"",
        ] {
            assert!(serde_json::from_str::<Usd>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rounding_is_half_away_from_zero() {
        assert_eq!(Usd(4_995_000_000).rounded(2), "5.00");
        assert_eq!(Usd(-4_995_000_000).rounded(2), "-5.00");
        assert_eq!(Usd(4_994_999_999).rounded(2), "4.99");
    }
}
