//! Billing for the signed-in user (`/api/v1`): top-up through the payment provider's
//! checkout, payments with receipt PDFs, monthly statements as JSON, CSV and PDF, and the
//! request log (paged JSON, one entry, streamed CSV export). Also the payment webhook
//! (`/webhooks/payments/{payment_provider}`), which is signed by the provider instead.
//!
//! Every JSON body is a `tokengate_api::billing` type. Amounts are exact decimals
//! ([`Usd`]: at least two decimals, up to nine), so every total equals the sum of its rows
//! to the nano-dollar; times are RFC 3339 ([`Timestamp`]). The CSV and PDF exports are
//! files with their own fixed formats.

use std::collections::HashMap;

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime};
use tokengate_api::account::UsageByModel;
use tokengate_api::billing::{
    Checkout, LogQuery, MonthQuery, PaymentView, RequestLog, RequestLogPage, StatementAccount,
    StatementCredit, StatementView, TopupRequest, WebhookAck, WebhookResult,
};
use tokengate_api::{Timestamp, Usd};
use tokengate_core::accounts::EntryKind;
use tokengate_core::money::{NANOS_PER_USD, format_balance, format_exact};
use tokengate_core::payments::{self, Applied, NewPayment, Payment, PaymentStatus};
use tokengate_core::statements::{self, Month, Statement};
use tokengate_core::usage::{self, LogFilter, LogRow, StatusFilter};
use tokengate_core::{Db, keys, now_ms};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::CurrentUser;
use crate::billing::{self, CheckoutRequest, ProviderError, csv};
use crate::http::error::{
    ApiErrorBody, BadRequest, NotFound, PaymentsUnavailable, Unauthorized, Unprocessable,
};
use crate::http::{ApiError, ApiJson, ApiPath, ApiQuery, typed_object};

/// The billing routes; each handler's `#[utoipa::path]` names its method and path.
pub fn route_table() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(topup))
        .routes(routes!(list_payments))
        .routes(routes!(receipt_pdf))
        .routes(routes!(statement_json))
        .routes(routes!(statement_csv))
        .routes(routes!(statement_pdf))
        .routes(routes!(list_logs))
        .routes(routes!(export_logs))
        .routes(routes!(get_log))
}

// ---------------------------------------------------------------------------------------
// Top-up and payments

/// Start a top-up
///
/// Creates a checkout session at the payment provider and returns its URL for a person to
/// open and pay. **The API never charges anyone**: agents hand `checkout_url` to a person
/// and never open or pay it themselves. The credit arrives when the provider's webhook
/// confirms the payment.
#[utoipa::path(post, path = "/topup", tag = "Billing", operation_id = "create_topup",
    security(("access_token" = []), ("session_cookie" = [])),
    request_body(content = TopupRequest, example = json!({"amount_usd": "5.00"})),
    responses((status = 200, description = "The checkout to hand to a person.", body = Checkout),
        BadRequest, Unauthorized, Unprocessable, PaymentsUnavailable))]
async fn topup(
    CurrentUser(u): CurrentUser,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<Map<String, Value>>,
) -> Result<ApiJson<Checkout>, ApiError> {
    let amount = topup_amount(body)?;
    let max = state.config.topup_max_nano;
    if amount < NANOS_PER_USD {
        return Err(ApiError::Unprocessable(
            "amount_usd must be at least 1.00".into(),
        ));
    }
    if amount > max {
        return Err(ApiError::Unprocessable(format!(
            "amount_usd must be at most {}",
            format_balance(max)
        )));
    }
    if amount % (NANOS_PER_USD / 100) != 0 {
        return Err(ApiError::Unprocessable(
            "amount_usd must be a whole number of cents".into(),
        ));
    }
    let provider = state.payments.checkout_provider().ok_or_else(|| {
        ApiError::PaymentsUnavailable(
            "Top-ups are not available: no payment provider is configured on this server.".into(),
        )
    })?;
    let base = &state.config.public_url;
    let checkout = provider
        .create_checkout(&CheckoutRequest {
            user_id: u.id,
            email: u.email.clone(),
            amount_nano: amount,
            success_url: format!(
                "{base}/me/billing?checkout=success&session_id={{CHECKOUT_SESSION_ID}}"
            ),
            cancel_url: format!("{base}/me/billing?checkout=cancel"),
        })
        .await
        .map_err(|e| match e {
            ProviderError::Invalid(m) => ApiError::Unprocessable(m),
            ProviderError::Upstream(detail) => {
                tracing::warn!(provider = provider.name(), error = %detail, "creating a checkout failed");
                ApiError::PaymentsUnavailable(
                    "The payment provider could not create a checkout. Try again shortly.".into(),
                )
            }
        })?;
    let payment = payments::create_pending(
        &state.db,
        &NewPayment {
            user_id: u.id,
            provider: provider.name(),
            session_id: &checkout.session_id,
            amount_nano: amount,
            checkout_url: &checkout.url,
            expires_at: checkout.expires_at,
        },
    )
    .await?;
    Ok(ApiJson(Checkout {
        checkout_url: checkout.url,
        session_id: checkout.session_id,
        amount_usd: Usd(amount),
        expires_at: checkout.expires_at.and_then(from_unix_seconds),
        payment_id: payment.id,
    }))
}

/// The amount of a top-up body in nano-USD: present (422 otherwise), a USD amount (422
/// otherwise), from 1.00 to the configured maximum is checked by the caller.
fn topup_amount(body: Map<String, Value>) -> Result<i64, ApiError> {
    if !body.contains_key("amount_usd") {
        return Err(ApiError::Unprocessable("amount_usd is required".into()));
    }
    let req: TopupRequest =
        typed_object(body, TopupRequest::VALUE_FIELDS).map_err(|e| match e {
            ApiError::Unprocessable(_) => {
                ApiError::Unprocessable("amount_usd must be a USD amount such as \"5.00\"".into())
            }
            other => other,
        })?;
    Ok(req.amount_usd.nanos())
}

/// Unix seconds (as payment providers give expiry times) as a timestamp.
fn from_unix_seconds(secs: i64) -> Option<Timestamp> {
    secs.checked_mul(1000).map(Timestamp)
}

fn payment_view(p: &Payment) -> PaymentView {
    let paid = p.status == PaymentStatus::Paid;
    PaymentView {
        id: p.id,
        provider: p.provider.clone(),
        session_id: p.session_id.clone(),
        amount_usd: Usd(p.amount_nano),
        currency: p.currency.to_ascii_uppercase(),
        status: p.status,
        checkout_url: p
            .checkout_url
            .clone()
            .filter(|_| p.status == PaymentStatus::Pending),
        expires_at: p.expires_at.and_then(from_unix_seconds),
        created_at: Timestamp(p.created_at),
        paid_at: p.paid_at.map(Timestamp),
        receipt_url: paid.then(|| format!("/api/v1/me/billing/payments/{}/receipt.pdf", p.id)),
    }
}

/// List payments
///
/// The account's top-up payments, newest first.
#[utoipa::path(get, path = "/me/billing/payments", tag = "Billing", operation_id = "list_payments",
    security(("access_token" = []), ("session_cookie" = [])),
    responses((status = 200, description = "Payments (a JSON array).", body = Vec<PaymentView>), Unauthorized))]
async fn list_payments(
    CurrentUser(u): CurrentUser,
    State(state): State<AppState>,
) -> Result<ApiJson<Vec<PaymentView>>, ApiError> {
    let list = payments::list_for_user(&state.db, u.id).await?;
    Ok(ApiJson(list.iter().map(payment_view).collect()))
}

fn pdf_response(bytes: Vec<u8>, filename: &str) -> Response {
    let mut resp = Response::new(Body::from(bytes));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/pdf"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("inline; filename=\"{filename}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    resp
}

/// Receipt PDF
///
/// The receipt of a paid top-up (404 until it is paid).
#[utoipa::path(get, path = "/me/billing/payments/{id}/receipt.pdf", tag = "Billing", operation_id = "get_receipt_pdf",
    security(("access_token" = []), ("session_cookie" = [])),
    params(("id" = i64, Path, description = "The payment's id")),
    responses((status = 200, description = "The receipt.", content_type = "application/pdf", body = Vec<u8>),
        Unauthorized, NotFound))]
async fn receipt_pdf(
    CurrentUser(u): CurrentUser,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response, ApiError> {
    let p = payments::get_for_user(&state.db, u.id, id).await?;
    if p.status != PaymentStatus::Paid {
        return Err(ApiError::NotFound(
            "A receipt exists once the payment has been received.".into(),
        ));
    }
    let bytes = billing::pdf::receipt(&p, &u);
    Ok(pdf_response(
        bytes,
        &format!("tokengate-receipt-{}.pdf", p.id),
    ))
}

// ---------------------------------------------------------------------------------------
// Statements

async fn load_statement(db: &Db, user_id: i64, q: &MonthQuery) -> Result<Statement, ApiError> {
    let month = match q.month.as_deref() {
        Some(m) => Month::parse(m).map_err(|e| ApiError::Unprocessable(e.to_string()))?,
        None => Month::of_ms(now_ms()),
    };
    Ok(statements::monthly(db, user_id, month).await?)
}

fn statement_view(s: &Statement) -> StatementView {
    let credits = s
        .credits
        .iter()
        .map(|e| StatementCredit {
            kind: e.kind,
            amount_usd: Usd(e.amount_nano),
            amount_nano: e.amount_nano,
            reference: e.reference.clone(),
            note: e.note.clone(),
            created_at: Timestamp(e.created_at),
        })
        .collect();
    let usage_by_model = s
        .usage
        .iter()
        .map(|m| UsageByModel {
            model: m.model.clone(),
            requests: m.requests,
            tokens_in: m.tokens_in,
            tokens_out: m.tokens_out,
            cost_usd: Usd(m.cost_nano),
            cost_nano: m.cost_nano,
        })
        .collect();
    StatementView {
        account: StatementAccount {
            id: s.user_id,
            email: s.email.clone(),
            display_name: s.display_name.clone(),
        },
        month: s.month.clone(),
        period_start: Timestamp(s.period_start_ms),
        period_end: Timestamp(s.period_end_ms),
        currency: "USD".into(),
        opening_balance_usd: Usd(s.opening_nano),
        opening_balance_nano: s.opening_nano,
        topups_usd: Usd(s.topups_nano),
        topups_nano: s.topups_nano,
        adjustments_usd: Usd(s.adjustments_nano),
        adjustments_nano: s.adjustments_nano,
        usage_usd: Usd(s.usage_cost_nano),
        usage_nano: s.usage_cost_nano,
        usage_requests: s.usage_requests,
        usage_ledger_nano: s.usage_ledger_nano,
        net_change_usd: Usd(s.net_change_nano()),
        net_change_nano: s.net_change_nano(),
        closing_balance_usd: Usd(s.closing_nano),
        closing_balance_nano: s.closing_nano,
        reconciled: s.usage_ledger_nano == -s.usage_cost_nano,
        credits,
        usage_by_model,
    }
}

/// Monthly statement
///
/// One UTC calendar month: opening balance, top-ups, adjustments, refunds and promotional
/// credit, usage by model, closing balance. Every amount is exact, with a `…_nano` twin.
#[utoipa::path(get, path = "/me/billing/statement", tag = "Billing", operation_id = "get_statement",
    security(("access_token" = []), ("session_cookie" = [])),
    params(MonthQuery),
    responses((status = 200, description = "The statement.", body = StatementView),
        BadRequest, Unauthorized, Unprocessable))]
async fn statement_json(
    CurrentUser(u): CurrentUser,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<MonthQuery>,
) -> Result<ApiJson<StatementView>, ApiError> {
    let s = load_statement(&state.db, u.id, &q).await?;
    Ok(ApiJson(statement_view(&s)))
}

/// The statement as CSV: an opening row, one row per credit and per model's usage, and a
/// closing row; opening + Σ activity rows = closing, exactly.
pub fn statement_csv_text(s: &Statement) -> String {
    let mut out = String::new();
    csv::record(
        &mut out,
        &[
            "kind",
            "date",
            "description",
            "reference",
            "model",
            "requests",
            "tokens_in",
            "tokens_out",
            "amount_usd",
        ],
    );
    let start = Timestamp(s.period_start_ms).rfc3339();
    let end = Timestamp(s.period_end_ms).rfc3339();
    let empty = String::new();
    csv::record(
        &mut out,
        &[
            "opening_balance",
            &start,
            "Opening balance",
            "",
            "",
            "",
            "",
            "",
            &format_exact(s.opening_nano),
        ],
    );
    for e in &s.credits {
        csv::record(
            &mut out,
            &[
                e.kind.as_str(),
                &Timestamp(e.created_at).rfc3339(),
                &csv::text(e.note.as_ref().unwrap_or(&empty)),
                &csv::text(e.reference.as_ref().unwrap_or(&empty)),
                "",
                "",
                "",
                "",
                &format_exact(e.amount_nano),
            ],
        );
    }
    for m in &s.usage {
        csv::record(
            &mut out,
            &[
                "usage",
                &start,
                &format!("Usage {}", s.month),
                "",
                &csv::text(&m.model),
                &m.requests.to_string(),
                &m.tokens_in.to_string(),
                &m.tokens_out.to_string(),
                &format_exact(-m.cost_nano),
            ],
        );
    }
    csv::record(
        &mut out,
        &[
            "closing_balance",
            &end,
            "Closing balance",
            "",
            "",
            "",
            "",
            "",
            &format_exact(s.closing_nano),
        ],
    );
    out
}

fn csv_response(body: Body, filename: &str) -> Response {
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8; header=present"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    resp
}

/// Monthly statement as CSV
///
/// RFC 4180 CSV: an `opening_balance` row, one row per credit and per model's usage, a
/// `closing_balance` row; opening + Σ rows = closing.
#[utoipa::path(get, path = "/me/billing/statement.csv", tag = "Billing", operation_id = "get_statement_csv",
    security(("access_token" = []), ("session_cookie" = [])),
    params(MonthQuery),
    responses((status = 200, description = "The statement as CSV.", content_type = "text/csv", body = String,
        example = json!("kind,date,description,reference,model,requests,tokens_in,tokens_out,amount_usd\r\nopening_balance,2026-11-01T00:00:00Z,Opening balance,,,,,,0.00\r\n")),
        BadRequest, Unauthorized, Unprocessable))]
async fn statement_csv(
    CurrentUser(u): CurrentUser,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<MonthQuery>,
) -> Result<Response, ApiError> {
    let s = load_statement(&state.db, u.id, &q).await?;
    Ok(csv_response(
        Body::from(statement_csv_text(&s)),
        &format!("tokengate-statement-{}.csv", s.month),
    ))
}

/// Monthly statement as PDF
#[utoipa::path(get, path = "/me/billing/statement.pdf", tag = "Billing", operation_id = "get_statement_pdf",
    security(("access_token" = []), ("session_cookie" = [])),
    params(MonthQuery),
    responses((status = 200, description = "The statement as PDF.", content_type = "application/pdf", body = Vec<u8>),
        BadRequest, Unauthorized, Unprocessable))]
async fn statement_pdf(
    CurrentUser(u): CurrentUser,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<MonthQuery>,
) -> Result<Response, ApiError> {
    let s = load_statement(&state.db, u.id, &q).await?;
    let bytes = billing::pdf::statement(&s, now_ms());
    Ok(pdf_response(
        bytes,
        &format!("tokengate-statement-{}.pdf", s.month),
    ))
}

// ---------------------------------------------------------------------------------------
// Request logs

/// A query string read as `T`, refused in the API's shape: a value `T` cannot hold at one
/// of `value_fields` (`key_id=x`) is a 422 naming the field, like a value the handler
/// refuses; a malformed query or a repeated parameter is a 400.
fn typed_query<T: DeserializeOwned>(
    raw: Option<&str>,
    value_fields: &[&str],
) -> Result<T, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
        .map_err(|e| ApiError::BadRequest(format!("Invalid query string: {e}")))?;
    let mut map = Map::new();
    for (k, v) in pairs {
        if map.contains_key(&k) {
            return Err(ApiError::BadRequest(format!(
                "Invalid query string: {k} is given more than once"
            )));
        }
        map.insert(k, Value::String(v));
    }
    typed_object(map, value_fields)
}

/// A time filter: RFC 3339, `YYYY-MM-DD` (UTC midnight; as `to`, the end of that day) or
/// unix seconds.
fn parse_bound(field: &str, s: &str, end_of_day: bool) -> Result<i64, ApiError> {
    let s = s.trim();
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok((t.unix_timestamp_nanos() / 1_000_000) as i64);
    }
    if let Some(d) = parse_date(s) {
        let d = if end_of_day {
            d.next_day().unwrap_or(d)
        } else {
            d
        };
        return Ok(d.midnight().assume_utc().unix_timestamp() * 1000);
    }
    if let Ok(secs) = s.parse::<i64>()
        && secs >= 0
    {
        return Ok(secs.saturating_mul(1000));
    }
    Err(ApiError::Unprocessable(format!(
        "{field} must be an RFC 3339 time, a date (YYYY-MM-DD) or unix seconds"
    )))
}

/// `YYYY-MM-DD`.
fn parse_date(s: &str) -> Option<Date> {
    let mut parts = s.splitn(3, '-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let month = time::Month::try_from(m.parse::<u8>().ok()?).ok()?;
    Date::from_calendar_date(y.parse().ok()?, month, d.parse().ok()?).ok()
}

fn nonempty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn log_filter(q: &LogQuery) -> Result<LogFilter, ApiError> {
    Ok(LogFilter {
        from: nonempty(&q.from)
            .map(|s| parse_bound("from", s, false))
            .transpose()?,
        to: nonempty(&q.to)
            .map(|s| parse_bound("to", s, true))
            .transpose()?,
        key_id: q.key_id,
        model: nonempty(&q.model).map(str::to_string),
        status: nonempty(&q.status)
            .map(StatusFilter::parse)
            .transpose()
            .map_err(|e| ApiError::Unprocessable(e.to_string()))?,
    })
}

async fn key_names(db: &Db, user_id: i64) -> Result<HashMap<i64, String>, ApiError> {
    Ok(keys::list_for_user(db, user_id)
        .await?
        .into_iter()
        .map(|k| (k.id, k.name))
        .collect())
}

fn log_view(r: &LogRow, names: &HashMap<i64, String>) -> RequestLog {
    let rec = &r.record;
    RequestLog {
        id: r.id,
        request_id: rec.request_id.clone(),
        created_at: Timestamp(rec.created_at),
        key_id: rec.key_id,
        key_name: names.get(&rec.key_id).cloned(),
        endpoint: rec.endpoint.clone(),
        model: rec.model.clone(),
        served_model: rec.served_model.clone(),
        provider: rec.provider.clone(),
        stream: rec.stream,
        status: rec.status,
        error_type: rec.error_type,
        error_message: rec.error_message.clone(),
        tokens_in: rec.tokens_in,
        tokens_out: rec.tokens_out,
        cached_tokens: rec.cached_tokens,
        cost_usd: Usd(rec.cost_nano),
        cost_nano: rec.cost_nano,
        latency_ms: rec.latency_ms,
        ttfb_ms: rec.ttfb_ms,
        attempts: rec.attempts,
        attempts_detail: rec.attempts_json.clone(),
    }
}

/// Request log
///
/// The account's requests, newest first, one page at a time: pass `next_before` as
/// `before` for the next page.
#[utoipa::path(get, path = "/me/request-logs", tag = "Billing", operation_id = "list_request_logs",
    security(("access_token" = []), ("session_cookie" = [])),
    params(LogQuery),
    responses((status = 200, description = "A page of requests.", body = RequestLogPage),
        BadRequest, Unauthorized, Unprocessable))]
async fn list_logs(
    CurrentUser(u): CurrentUser,
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<ApiJson<RequestLogPage>, ApiError> {
    let q: LogQuery = typed_query(raw.as_deref(), LogQuery::VALUE_FIELDS)?;
    let filter = log_filter(&q)?;
    let limit = match q.limit {
        None => 50,
        Some(l) if (1..=500).contains(&l) => l,
        Some(_) => {
            return Err(ApiError::Unprocessable(
                "limit must be from 1 to 500".into(),
            ));
        }
    };
    let rows = usage::logs_page(&state.db, u.id, &filter, q.before, limit).await?;
    let names = key_names(&state.db, u.id).await?;
    let next_before = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.id))
        .flatten();
    Ok(ApiJson(RequestLogPage {
        data: rows.iter().map(|r| log_view(r, &names)).collect(),
        next_before,
    }))
}

/// One request
///
/// One request by its `x-request-id`: attempts, provider, tokens, cost, latency, error.
#[utoipa::path(get, path = "/me/request-logs/{request_id}", tag = "Billing", operation_id = "get_request_log",
    security(("access_token" = []), ("session_cookie" = [])),
    params(("request_id" = String, Path, description = "The `x-request-id` of the answer")),
    responses((status = 200, description = "The request.", body = RequestLog), Unauthorized, NotFound))]
async fn get_log(
    CurrentUser(u): CurrentUser,
    State(state): State<AppState>,
    ApiPath(request_id): ApiPath<String>,
) -> Result<ApiJson<RequestLog>, ApiError> {
    let row = usage::log_by_request_id(&state.db, u.id, &request_id).await?;
    let names = key_names(&state.db, u.id).await?;
    Ok(ApiJson(log_view(&row, &names)))
}

const LOG_CSV_HEADER: [&str; 14] = [
    "created_at",
    "request_id",
    "key_id",
    "key_name",
    "endpoint",
    "model",
    "served_model",
    "provider",
    "status",
    "tokens_in",
    "tokens_out",
    "cost_usd",
    "latency_ms",
    "error",
];

fn log_csv_row(out: &mut String, r: &LogRow, names: &HashMap<i64, String>) {
    let rec = &r.record;
    let name = names.get(&rec.key_id).map(String::as_str).unwrap_or("");
    csv::record(
        out,
        &[
            Timestamp(rec.created_at).rfc3339(),
            rec.request_id.clone(),
            rec.key_id.to_string(),
            csv::text(name),
            rec.endpoint.clone(),
            csv::text(&rec.model),
            csv::text(rec.served_model.as_deref().unwrap_or("")),
            csv::text(rec.provider.as_deref().unwrap_or("")),
            rec.status.to_string(),
            rec.tokens_in.to_string(),
            rec.tokens_out.to_string(),
            format_exact(rec.cost_nano),
            rec.latency_ms.to_string(),
            csv::text(rec.error_message.as_deref().unwrap_or("")),
        ],
    );
}

/// Rows per page of the export: memory stays bounded whatever the number of rows.
const EXPORT_PAGE: i64 = 1000;

/// Request log as CSV
///
/// The filtered log as RFC 4180 CSV, newest first, streamed (any number of rows). Text a
/// person typed is prefixed with `'` when a spreadsheet would evaluate it. `after` (a
/// request id) resumes an interrupted export: the rows after it, without the header.
#[utoipa::path(get, path = "/me/request-logs.csv", tag = "Billing", operation_id = "export_request_logs_csv",
    security(("access_token" = []), ("session_cookie" = [])),
    params(LogQuery),
    responses((status = 200, description = "The log as CSV.", content_type = "text/csv", body = String),
        BadRequest, Unauthorized, NotFound, Unprocessable))]
async fn export_logs(
    CurrentUser(u): CurrentUser,
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q: LogQuery = typed_query(raw.as_deref(), LogQuery::VALUE_FIELDS)?;
    let filter = log_filter(&q)?;
    let names = key_names(&state.db, u.id).await?;
    // Resuming: the rows after (older than) that request, without the header row.
    let (before, header) = match q.after.as_deref().map(str::trim).filter(|a| !a.is_empty()) {
        Some(after) => (
            Some(usage::log_by_request_id(&state.db, u.id, after).await?.id),
            None,
        ),
        None => {
            let mut header = String::new();
            csv::record(&mut header, &LOG_CSV_HEADER);
            (None, Some(header))
        }
    };
    struct Cursor {
        db: Db,
        user_id: i64,
        filter: LogFilter,
        names: HashMap<i64, String>,
        before: Option<i64>,
        header: Option<String>,
        done: bool,
    }
    let start = Cursor {
        db: state.db.clone(),
        user_id: u.id,
        filter,
        names,
        before,
        header,
        done: false,
    };
    let stream = futures::stream::unfold(start, |mut c| async move {
        if let Some(h) = c.header.take() {
            return Some((Ok::<Bytes, std::io::Error>(Bytes::from(h)), c));
        }
        if c.done {
            return None;
        }
        match usage::logs_page(&c.db, c.user_id, &c.filter, c.before, EXPORT_PAGE).await {
            Ok(rows) => {
                if (rows.len() as i64) < EXPORT_PAGE {
                    c.done = true;
                }
                let last = rows.last()?;
                c.before = Some(last.id);
                let mut out = String::with_capacity(rows.len() * 160);
                for r in &rows {
                    log_csv_row(&mut out, r, &c.names);
                }
                Some((Ok(Bytes::from(out)), c))
            }
            Err(e) => {
                // Headers are sent: end the body with an error so the client sees a
                // truncated download rather than a silently short file.
                tracing::error!(error = %e, "request-log export failed midway");
                c.done = true;
                Some((Err(std::io::Error::other("export failed")), c))
            }
        }
    });
    Ok(csv_response(
        Body::from_stream(stream),
        "tokengate-request-logs.csv",
    ))
}

// ---------------------------------------------------------------------------------------
// Webhook

/// Payment providers tokengate knows, configured or not.
const KNOWN_PROVIDERS: [&str; 1] = ["stripe"];

/// Payment webhook
///
/// Signed events from the payment provider (`stripe`: `Stripe-Signature`, the endpoint's
/// signing secret as `webhook_secret`). The delivery is verified on its raw body and
/// applied once: a checkout session this server created is credited exactly once, when
/// the event's account, amount and currency equal the stored ones, whatever the number or
/// order of deliveries; `charge.refunded` and `charge.dispute.created` debit the account
/// (the balance may go negative). 400 (nothing changed) for a bad signature or body; 200
/// for processed, repeated, ignored, unknown and mismatching events (nothing credited for
/// the last two; they are logged); 5xx only when the database fails, so the provider
/// retries.
#[utoipa::path(post, path = "/webhooks/payments/{payment_provider}", tag = "Billing",
    operation_id = "payment_webhook",
    params(
        ("payment_provider" = String, Path, description = "`stripe`", example = "stripe"),
        ("Stripe-Signature" = String, Header, description = "Stripe's signature header: `t=<unix>,v1=<hex HMAC-SHA-256>`"),
    ),
    request_body(content = Object, content_type = "application/json",
        description = "The provider's event, exactly as it sent it.",
        example = json!({"id": "evt_1Q2w3E", "type": "checkout.session.completed", "data": {"object": {"id": "cs_test_a1B2c3"}}})),
    responses(
        (status = 200, description = "Processed, repeated or ignored.", body = WebhookAck),
        (status = 400, description = "Bad signature, stale timestamp or malformed body; nothing changed.", body = ApiErrorBody,
            example = json!({"error": {"message": "Webhook rejected: signature mismatch.", "type": "invalid_request_error", "code": "invalid_request"}})),
        (status = 404, description = "Unknown payment provider.", body = ApiErrorBody,
            example = json!({"error": {"message": "Unknown payment provider.", "type": "invalid_request_error", "code": "not_found"}})),
        (status = 503, description = "The provider is not configured on this server.", body = ApiErrorBody,
            example = json!({"error": {"message": "The stripe payment provider is not configured on this server.", "type": "api_error", "code": "payments_unavailable"}})),
    ))]
pub async fn webhook(
    State(state): State<AppState>,
    ApiPath(provider_name): ApiPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<ApiJson<WebhookAck>, ApiError> {
    let Some(provider) = state.payments.get(&provider_name) else {
        if KNOWN_PROVIDERS.contains(&provider_name.as_str()) {
            return Err(ApiError::PaymentsUnavailable(format!(
                "The {provider_name} payment provider is not configured on this server."
            )));
        }
        return Err(ApiError::NotFound("Unknown payment provider.".into()));
    };
    let event = match provider.parse_webhook(&headers, &body) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(provider = provider.name(), error = %e, "webhook rejected");
            return Err(ApiError::BadRequest(format!("Webhook rejected: {e}.")));
        }
    };
    let result = match &event.outcome {
        None => {
            payments::record_ignored(&state.db, provider.name(), &event.id, &event.kind).await?;
            WebhookResult::Ignored
        }
        Some(outcome) => {
            match payments::apply_event(&state.db, provider.name(), &event.id, &event.kind, outcome)
                .await?
            {
                Applied::Credited {
                    user_id,
                    amount_nano,
                    ..
                } => {
                    tracing::info!(
                        provider = provider.name(),
                        event = %event.id,
                        user_id,
                        amount = %format_balance(amount_nano),
                        "top-up credited"
                    );
                    if let Err(e) = state.gateway.reload_account(user_id).await {
                        tracing::warn!(error = %e, "reloading a credited account failed; the periodic refresh will apply it");
                    }
                    WebhookResult::Credited
                }
                Applied::Debited {
                    user_id,
                    kind,
                    amount_nano,
                    balance_nano,
                } => {
                    tracing::info!(
                        provider = provider.name(),
                        event = %event.id,
                        user_id,
                        kind = kind.as_str(),
                        amount = %format_balance(amount_nano),
                        balance = %format_balance(balance_nano),
                        "payment taken back; account debited"
                    );
                    // The gateway must stop spending money that is gone, at once.
                    if let Err(e) = state.gateway.reload_account(user_id).await {
                        tracing::warn!(error = %e, "reloading a debited account failed; the periodic refresh will apply it");
                    }
                    if kind == EntryKind::Dispute {
                        WebhookResult::Disputed
                    } else {
                        WebhookResult::Refunded
                    }
                }
                Applied::DuplicateEvent => WebhookResult::Duplicate,
                Applied::AlreadyPaid => WebhookResult::AlreadyPaid,
                Applied::Marked => WebhookResult::Updated,
                Applied::UnknownPayment => WebhookResult::UnknownPayment,
                Applied::Mismatch => WebhookResult::Mismatch,
                Applied::Unchanged => WebhookResult::Unchanged,
            }
        }
    };
    Ok(ApiJson(WebhookAck {
        received: true,
        event: event.id,
        result,
    }))
}
