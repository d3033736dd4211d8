//! Money: integer nano-USD (1 USD = 1_000_000_000) in storage and arithmetic, decimal
//! strings at the API boundary, and the one rounding rule for request costs.

use crate::Error;

pub use tokengate_api::money::{NANOS_PER_USD, Usd, format_exact, format_usd};

/// Parses a decimal USD amount ("5", "5.0", "0.000150", "-1.5") into nano-USD.
/// More than nine decimals, exponents, or values beyond ±9 billion USD are rejected.
pub fn parse_usd(input: &str) -> Result<i64, Error> {
    tokengate_api::money::parse_usd(input).map_err(|e| Error::Invalid(e.to_string()))
}

/// Parses a JSON amount that may be a string ("5.0") or a number (5, 5.5).
pub fn parse_usd_json(value: &serde_json::Value) -> Result<i64, Error> {
    match value {
        serde_json::Value::String(s) => parse_usd(s),
        serde_json::Value::Number(n) => parse_usd(&n.to_string()),
        _ => Err(Error::Invalid("amount must be a string or a number".into())),
    }
}

/// Balances and top-ups: two decimals ("5.00").
pub fn format_balance(nanos: i64) -> String {
    format_usd(nanos, 2)
}

/// A model's prices in nano-USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Prices {
    pub input_per_m: i64,
    pub output_per_m: i64,
    /// Price of cached input tokens read from the provider's prompt cache; input price if unset.
    pub cache_read_per_m: Option<i64>,
    /// Price of input tokens written to the provider's prompt cache; input price if unset.
    pub cache_write_per_m: Option<i64>,
}

/// Token counts of one request, as reported by the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    /// Uncached input tokens.
    pub input: i64,
    pub output: i64,
    pub cache_read: i64,
    pub cache_write: i64,
}

impl Usage {
    /// Every input token, cached or not.
    pub fn total_input(&self) -> i64 {
        self.input + self.cache_read + self.cache_write
    }
}

impl Prices {
    /// The cost of a request: one sum over all token classes, divided and rounded once
    /// (half up) to a whole nano-USD. Never negative.
    pub fn cost(&self, usage: &Usage) -> i64 {
        let per_m = |tokens: i64, price: i64| i128::from(tokens.max(0)) * i128::from(price.max(0));
        let total = per_m(usage.input, self.input_per_m)
            + per_m(usage.output, self.output_per_m)
            + per_m(
                usage.cache_read,
                self.cache_read_per_m.unwrap_or(self.input_per_m),
            )
            + per_m(
                usage.cache_write,
                self.cache_write_per_m.unwrap_or(self.input_per_m),
            );
        let rounded = (total + 500_000) / 1_000_000;
        i64::try_from(rounded).unwrap_or(i64::MAX)
    }
}

/// Formats a per-million price as USD per 1k tokens ("0.00015"), exactly: the division by
/// 1000 is done in decimal so no digit is lost.
pub fn format_price_per_1k(per_m_nanos: i64) -> String {
    // nano-USD per million tokens / 1000 = pico-USD per 1k tokens; print with 12 decimals
    // and trim.
    let neg = per_m_nanos < 0;
    let abs = per_m_nanos.unsigned_abs();
    let scale: u64 = 1_000_000_000_000;
    let whole = abs / scale;
    let frac = abs % scale;
    let mut frac = format!("{frac:012}");
    while frac.len() > 2 && frac.ends_with('0') {
        frac.pop();
    }
    format!("{}{whole}.{frac}", if neg { "-" } else { "" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_decimals() {
        assert_eq!(parse_usd("5").unwrap(), 5 * NANOS_PER_USD);
        assert_eq!(parse_usd("5.0").unwrap(), 5 * NANOS_PER_USD);
        assert_eq!(parse_usd("0.000150").unwrap(), 150_000);
        assert_eq!(parse_usd("0.000000001").unwrap(), 1);
        assert_eq!(parse_usd("-1.5").unwrap(), -1_500_000_000);
        assert_eq!(parse_usd(".5").unwrap(), 500_000_000);
        for bad in [
            "",
            ".",
            "1e3",
            "abc",
            "1.0000000001",
            "1,5",
            "99999999999",
            "--1",
        ] {
            assert!(parse_usd(bad).is_err(), "{bad} should be rejected");
        }
        assert_eq!(
            parse_usd_json(&serde_json::json!(5.5)).unwrap(),
            5_500_000_000
        );
        assert_eq!(
            parse_usd_json(&serde_json::json!("2")).unwrap(),
            2 * NANOS_PER_USD
        );
        assert!(parse_usd_json(&serde_json::json!(true)).is_err());
    }

    #[test]
    fn formats_with_one_rounding_rule() {
        assert_eq!(format_balance(5 * NANOS_PER_USD), "5.00");
        assert_eq!(format_balance(4_994_999_999), "4.99");
        assert_eq!(format_balance(4_995_000_000), "5.00");
        assert_eq!(format_balance(-4_995_000_000), "-5.00");
        assert_eq!(format_usd(150_000, 6), "0.000150");
        assert_eq!(format_usd(1, 9), "0.000000001");
        assert_eq!(format_usd(7, 0), "0");
        assert_eq!(format_exact(150_000), "0.00015");
        assert_eq!(format_exact(5 * NANOS_PER_USD), "5.00");
        assert_eq!(format_exact(1), "0.000000001");
    }

    #[test]
    fn price_per_1k_is_exact() {
        // $0.15 per million tokens = $0.00015 per 1k.
        assert_eq!(format_price_per_1k(150_000_000), "0.00015");
        assert_eq!(format_price_per_1k(600_000_000), "0.0006");
        // $0.0375 per million: 0.0000375 per 1k, no digit lost.
        assert_eq!(format_price_per_1k(37_500_000), "0.0000375");
        assert_eq!(format_price_per_1k(0), "0.00");
        assert_eq!(format_price_per_1k(3_000_000_000), "0.003");
    }

    #[test]
    fn cost_rounds_once_over_the_sum() {
        let p = Prices {
            input_per_m: 150_000_000,
            output_per_m: 600_000_000,
            cache_read_per_m: Some(75_000_000),
            cache_write_per_m: None,
        };
        // 10 in + 20 out = 1500 + 12000 nano.
        let u = Usage {
            input: 10,
            output: 20,
            ..Usage::default()
        };
        assert_eq!(p.cost(&u), 13_500);
        // A price that yields fractional nanos per token: 1 token at $0.0375/M = 37.5 nano.
        let q = Prices {
            input_per_m: 37_500_000,
            ..Prices::default()
        };
        assert_eq!(
            q.cost(&Usage {
                input: 1,
                ..Usage::default()
            }),
            38
        ); // rounded once, half up
        assert_eq!(
            q.cost(&Usage {
                input: 2,
                ..Usage::default()
            }),
            75
        ); // not 2 × 38
        let c = Usage {
            input: 0,
            output: 0,
            cache_read: 1000,
            cache_write: 0,
        };
        assert_eq!(p.cost(&c), 75_000);
        assert_eq!(
            p.cost(&Usage {
                input: -5,
                ..Usage::default()
            }),
            0
        );
    }
}
