//! Monthly statements: opening balance, top-ups, adjustments, usage by model and closing
//! balance of one account for one UTC calendar month. Every figure is a sum of stored
//! amounts (ledger entries and request costs), so the JSON, CSV and PDF renderings of a
//! statement, the ledger and the request log agree to the nano-dollar.

use serde::Serialize;
use time::{Date, Month as CalMonth, OffsetDateTime, Time};

use crate::accounts::{self, LedgerEntry};
use crate::{Db, Error};

/// A UTC calendar month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    pub year: i32,
    pub month: u8,
}

impl Month {
    /// Parses `YYYY-MM`.
    pub fn parse(s: &str) -> Result<Month, Error> {
        let bad = || Error::Invalid(format!("month must be YYYY-MM, got {s:?}"));
        let (y, m) = s.split_once('-').ok_or_else(bad)?;
        if y.len() != 4 || m.len() != 2 {
            return Err(bad());
        }
        let year: i32 = y.parse().map_err(|_| bad())?;
        let month: u8 = m.parse().map_err(|_| bad())?;
        if !(1..=12).contains(&month) || !(1970..=9999).contains(&year) {
            return Err(bad());
        }
        Ok(Month { year, month })
    }

    /// The month containing `ms` (unix milliseconds).
    pub fn of_ms(ms: i64) -> Month {
        let t = OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        Month {
            year: t.year(),
            month: t.month() as u8,
        }
    }

    /// The month after this one.
    pub fn next(self) -> Month {
        if self.month == 12 {
            Month {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Month {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    /// First millisecond of the month.
    pub fn start_ms(self) -> i64 {
        let month = CalMonth::try_from(self.month).unwrap_or(CalMonth::January);
        Date::from_calendar_date(self.year, month, 1)
            .map(|d| d.with_time(Time::MIDNIGHT).assume_utc().unix_timestamp() * 1000)
            .unwrap_or(0)
    }

    /// First millisecond after the month.
    pub fn end_ms(self) -> i64 {
        self.next().start_ms()
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// `YYYY-MM-DD` (UTC) of unix milliseconds.
pub fn day_string(ms: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    format!("{:04}-{:02}-{:02}", t.year(), t.month() as u8, t.day())
}

/// Usage of one model in a statement period.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, sqlx::FromRow)]
pub struct ModelUsage {
    /// The model that served the requests (or the one asked for, when none did).
    pub model: String,
    pub requests: i64,
    pub tokens_in: i64,
    pub tokens_out: i64,
    pub cost_nano: i64,
}

/// One account's statement for one month.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Statement {
    pub user_id: i64,
    pub email: String,
    pub display_name: String,
    pub month: String,
    pub period_start_ms: i64,
    pub period_end_ms: i64,
    pub opening_nano: i64,
    pub closing_nano: i64,
    /// Top-ups, adjustments, refunds and promotional credit, oldest first.
    pub credits: Vec<LedgerEntry>,
    pub topups_nano: i64,
    /// Adjustments, refunds and promotional credit.
    pub adjustments_nano: i64,
    /// The usage ledger entries of the month (negative).
    pub usage_ledger_nano: i64,
    /// Usage by model from the request log.
    pub usage: Vec<ModelUsage>,
    /// Σ request costs of the month (positive).
    pub usage_cost_nano: i64,
    pub usage_requests: i64,
}

impl Statement {
    /// Closing − opening; equals Σ ledger entries of the month.
    pub fn net_change_nano(&self) -> i64 {
        self.closing_nano - self.opening_nano
    }
}

/// Builds the statement of `user_id` for `month`.
pub async fn monthly(db: &Db, user_id: i64, month: Month) -> Result<Statement, Error> {
    let user = accounts::get_user(db, user_id).await?;
    let (start, end) = (month.start_ms(), month.end_ms());
    let (opening, closing, usage_ledger): (i64, i64, i64) = sqlx::query_as(
        "SELECT CAST(COALESCE(SUM(CASE WHEN created_at < $2 THEN amount_nano ELSE 0 END), 0) \
         AS BIGINT) AS opening, \
         CAST(COALESCE(SUM(amount_nano), 0) AS BIGINT) AS closing, \
         CAST(COALESCE(SUM(CASE WHEN created_at >= $2 AND kind = 'usage' THEN amount_nano \
         ELSE 0 END), 0) AS BIGINT) AS usage \
         FROM ledger_entries WHERE user_id = $1 AND created_at < $3",
    )
    .bind(user_id)
    .bind(start)
    .bind(end)
    .fetch_one(db.pool())
    .await?;

    let credits: Vec<LedgerEntry> = sqlx::query_as(&format!(
        "SELECT {} FROM ledger_entries WHERE user_id = $1 AND created_at >= $2 \
         AND created_at < $3 AND kind <> 'usage' ORDER BY created_at, id",
        accounts::LEDGER_COLUMNS
    ))
    .bind(user_id)
    .bind(start)
    .bind(end)
    .fetch_all(db.pool())
    .await?;
    let topups = credits
        .iter()
        .filter(|e| e.kind == accounts::EntryKind::Topup)
        .map(|e| e.amount_nano)
        .sum();
    let adjustments = credits
        .iter()
        .filter(|e| e.kind != accounts::EntryKind::Topup)
        .map(|e| e.amount_nano)
        .sum();

    // Every request that was charged, plus every successful one (free ones included).
    let usage: Vec<ModelUsage> = sqlx::query_as(
        "SELECT COALESCE(served_model, model) AS model, CAST(COUNT(*) AS BIGINT) AS requests, \
         CAST(SUM(tokens_in) AS BIGINT) AS tokens_in, CAST(SUM(tokens_out) AS BIGINT) AS tokens_out, \
         CAST(SUM(cost_nano) AS BIGINT) AS cost_nano FROM request_logs \
         WHERE user_id = $1 AND created_at >= $2 AND created_at < $3 \
         AND (cost_nano <> 0 OR (status >= 200 AND status < 300)) \
         GROUP BY COALESCE(served_model, model) ORDER BY COALESCE(served_model, model)",
    )
    .bind(user_id)
    .bind(start)
    .bind(end)
    .fetch_all(db.pool())
    .await?;
    let usage_cost = usage.iter().map(|u| u.cost_nano).sum();
    let usage_requests = usage.iter().map(|u| u.requests).sum();
    Ok(Statement {
        user_id,
        email: user.email,
        display_name: user.display_name,
        month: month.to_string(),
        period_start_ms: start,
        period_end_ms: end,
        opening_nano: opening,
        closing_nano: closing,
        credits,
        topups_nano: topups,
        adjustments_nano: adjustments,
        usage_ledger_nano: usage_ledger,
        usage,
        usage_cost_nano: usage_cost,
        usage_requests,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_parse_and_bound() {
        let m = Month::parse("2026-02").unwrap();
        assert_eq!(m.to_string(), "2026-02");
        assert_eq!(m.start_ms(), 1_769_904_000_000);
        assert_eq!(m.end_ms(), Month::parse("2026-03").unwrap().start_ms());
        assert_eq!(
            Month::parse("2026-12").unwrap().next().to_string(),
            "2027-01"
        );
        assert_eq!(Month::of_ms(m.start_ms()), m);
        assert_eq!(Month::of_ms(m.end_ms() - 1), m);
        for bad in ["2026-13", "2026-00", "26-01", "2026/01", "2026-1", "x", ""] {
            assert!(Month::parse(bad).is_err(), "{bad}");
        }
    }
}
