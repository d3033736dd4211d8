//! Points in time on the wire: [`Timestamp`], unix milliseconds inside, an RFC 3339 UTC
//! string outside (`"2026-11-26T17:42:45.123Z"`); requests may also give unix seconds.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A point in time, in unix milliseconds (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// Unix milliseconds.
    pub fn millis(self) -> i64 {
        self.0
    }

    /// Unix seconds (rounded down).
    pub fn seconds(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// The RFC 3339 form (UTC, `Z`); milliseconds only when not zero.
    pub fn rfc3339(self) -> String {
        rfc3339(self.0)
    }

    /// Reads RFC 3339 (any offset) into a timestamp.
    pub fn parse_rfc3339(s: &str) -> Option<Timestamp> {
        OffsetDateTime::parse(s.trim(), &Rfc3339)
            .ok()
            .map(|t| Timestamp((t.unix_timestamp_nanos() / 1_000_000) as i64))
    }
}

/// Unix milliseconds as RFC 3339 in UTC; values outside years 1–9999 are clamped.
pub fn rfc3339(ms: i64) -> String {
    const MIN_MS: i64 = -62_135_596_800_000; // 0001-01-01T00:00:00Z
    const MAX_MS: i64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms.clamp(MIN_MS, MAX_MS)) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| String::from("1970-01-01T00:00:00Z"))
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&rfc3339(self.0))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&rfc3339(self.0))
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an RFC 3339 time or unix seconds")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Timestamp, E> {
                Timestamp::parse_rfc3339(v)
                    .ok_or_else(|| E::custom(format!("not an RFC 3339 time: {v:?}")))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Timestamp, E> {
                v.checked_mul(1000)
                    .filter(|_| v > 0)
                    .map(Timestamp)
                    .ok_or_else(|| E::custom("unix seconds must be positive"))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Timestamp, E> {
                i64::try_from(v)
                    .map_err(|_| E::custom("unix seconds out of range"))
                    .and_then(|v| self.visit_i64(v))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Timestamp {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{
            KnownFormat, ObjectBuilder, Schema, SchemaFormat, SchemaType, Type,
        };
        Schema::Object(
            ObjectBuilder::new()
                .schema_type(SchemaType::new(Type::String))
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
                .description(Some(
                    "RFC 3339 time in UTC. Requests also accept unix seconds (an integer).",
                ))
                .examples([serde_json::json!("2026-11-26T17:42:45Z")])
                .build(),
        )
        .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Timestamp {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_as_rfc3339_utc_and_read_back() {
        let t = Timestamp(1_764_178_965_123);
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, "\"2025-11-26T17:42:45.123Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
        assert_eq!(
            serde_json::to_string(&Timestamp(1_764_178_965_000)).unwrap(),
            "\"2025-11-26T17:42:45Z\""
        );
    }

    #[test]
    fn reads_offsets_and_unix_seconds_refuses_the_rest() {
        let t: Timestamp = serde_json::from_str("\"2025-11-26T18:42:45+01:00\"").unwrap();
        assert_eq!(t, Timestamp(1_764_178_965_000));
        let t: Timestamp = serde_json::from_str("1764178965").unwrap();
        assert_eq!(t, Timestamp(1_764_178_965_000));
        for bad in ["\"yesterday\"", "0", "-5", "1.5", "null", "[]"] {
            assert!(serde_json::from_str::<Timestamp>(bad).is_err(), "{bad}");
        }
    }
}
