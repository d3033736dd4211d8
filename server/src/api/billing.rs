//! Billing for the signed-in user (`/api/v1`): top-up through the payment provider's
//! checkout, payments with receipt PDFs, monthly statements as JSON, CSV and PDF, and the
//! request log (paged JSON, one entry, streamed CSV export). Also the payment webhook
//! (`/webhooks/payments/{payment_provider}`), which is signed by the provider instead.
//!
//! Amounts: balances and top-ups print with two decimals; statement, CSV, PDF and
//! per-request amounts print exactly (at least two decimals, up to nine), so every total
//! equals the sum of its rows to the nano-dollar.

use std::collections::HashMap;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime};
use tokengate_core::accounts::EntryKind;
use tokengate_core::money::{NANOS_PER_USD, format_balance, format_exact, parse_usd_json};
use tokengate_core::payments::{self, Applied, NewPayment, Payment, PaymentStatus};
use tokengate_core::statements::{self, Month, Statement};
use tokengate_core::usage::{self, LogFilter, LogRow, StatusFilter};
use tokengate_core::{Db, keys, now_ms};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::account::rfc3339;
use super::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::AppState;
use crate::auth::CurrentUser;
use crate::billing::{self, CheckoutRequest, ProviderError, csv};
use crate::docs::schemas::{
    ApiErrorBody, BadRequest, Checkout, NotFound, PaymentView, PaymentsUnavailable, RequestLog,
    RequestLogPage, StatementView, Unauthorized, Unprocessable, WebhookAck,
};

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

/// A top-up amount.
#[derive(Deserialize, ToSchema)]
#[schema(as = TopupRequest)]
struct TopupBody {
    /// USD, at least 1.00, at most `topup_max_usd` (10000 by default), whole cents.
    #[schema(value_type = crate::docs::schemas::UsdAmount, required = true, example = "5.00")]
    amount_usd: Option<Value>,
}

/// Start a top-up
///
/// Creates a checkout session at the payment provider and returns its URL for a person to
/// open and pay. **The API never charges anyone**: agents hand `checkout_url` to a person
/// and never open or pay it themselves. The credit arrives when the provider's webhook
/// confirms the payment.
#[utoipa::path(post, path = "/topup", tag = "Billing", operation_id = "create_topup",
    security(("access_token" = []), ("session_cookie" = [])),
    request_body(content = TopupBody, example = json!({"amount_usd": "5.00"})),
    responses((status = 200, description = "The checkout to hand to a person.", body = Checkout),
        BadRequest, Unauthorized, Unprocessable, PaymentsUnavailable))]
async fn topup(
    CurrentUser(u): CurrentUser,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<TopupBody>,
) -> Result<Json<Value>, ApiError> {
    let amount = body
        .amount_usd
        .as_ref()
        .ok_or_else(|| ApiError::Unprocessable("amount_usd is required".into()))
        .and_then(|v| {
            parse_usd_json(v).map_err(|_| {
                ApiError::Unprocessable("amount_usd must be a USD amount such as \"5.00\"".into())
            })
        })?;
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
    Ok(Json(json!({
        "checkout_url": checkout.url,
        "session_id": checkout.session_id,
        "amount_usd": format_balance(amount),
        "expires_at": checkout.expires_at,
        "payment_id": payment.id,
    })))
}

fn payment_view(p: &Payment) -> Value {
    let paid = p.status == PaymentStatus::Paid;
    json!({
        "id": p.id,
        "provider": p.provider,
        "session_id": p.session_id,
        "amount_usd": format_balance(p.amount_nano),
        "currency": p.currency.to_ascii_uppercase(),
        "status": p.status,
        "checkout_url": (p.status == PaymentStatus::Pending).then_some(p.checkout_url.as_deref()).flatten(),
        "expires_at": p.expires_at,
        "created_at": rfc3339(p.created_at),
        "paid_at": p.paid_at.and_then(rfc3339),
        "receipt_url": paid.then(|| format!("/api/v1/me/billing/payments/{}/receipt.pdf", p.id)),
    })
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
) -> Result<Json<Value>, ApiError> {
    let list = payments::list_for_user(&state.db, u.id).await?;
    Ok(Json(Value::Array(list.iter().map(payment_view).collect())))
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

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct MonthQuery {
    /// `YYYY-MM` (UTC); default: this month.
    #[param(example = "2026-11")]
    month: Option<String>,
}

async fn load_statement(db: &Db, user_id: i64, q: &MonthQuery) -> Result<Statement, ApiError> {
    let month = match q.month.as_deref() {
        Some(m) => Month::parse(m).map_err(|e| ApiError::Unprocessable(e.to_string()))?,
        None => Month::of_ms(now_ms()),
    };
    Ok(statements::monthly(db, user_id, month).await?)
}

fn statement_view(s: &Statement) -> Value {
    let credits: Vec<Value> = s
        .credits
        .iter()
        .map(|e| {
            json!({"kind": e.kind, "amount_usd": format_exact(e.amount_nano),
                "amount_nano": e.amount_nano, "reference": e.reference, "note": e.note,
                "created_at": rfc3339(e.created_at)})
        })
        .collect();
    let usage: Vec<Value> = s
        .usage
        .iter()
        .map(|m| {
            json!({"model": m.model, "requests": m.requests, "tokens_in": m.tokens_in,
                "tokens_out": m.tokens_out, "cost_usd": format_exact(m.cost_nano),
                "cost_nano": m.cost_nano})
        })
        .collect();
    json!({
        "account": {"id": s.user_id, "email": s.email, "display_name": s.display_name},
        "month": s.month,
        "period_start": rfc3339(s.period_start_ms),
        "period_end": rfc3339(s.period_end_ms),
        "currency": "USD",
        "opening_balance_usd": format_exact(s.opening_nano),
        "opening_balance_nano": s.opening_nano,
        "topups_usd": format_exact(s.topups_nano),
        "topups_nano": s.topups_nano,
        "adjustments_usd": format_exact(s.adjustments_nano),
        "adjustments_nano": s.adjustments_nano,
        "usage_usd": format_exact(s.usage_cost_nano),
        "usage_nano": s.usage_cost_nano,
        "usage_requests": s.usage_requests,
        "usage_ledger_nano": s.usage_ledger_nano,
        "net_change_usd": format_exact(s.net_change_nano()),
        "net_change_nano": s.net_change_nano(),
        "closing_balance_usd": format_exact(s.closing_nano),
        "closing_balance_nano": s.closing_nano,
        "reconciled": s.usage_ledger_nano == -s.usage_cost_nano,
        "credits": credits,
        "usage_by_model": usage,
    })
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
) -> Result<Json<Value>, ApiError> {
    let s = load_statement(&state.db, u.id, &q).await?;
    Ok(Json(statement_view(&s)))
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
    let start = rfc3339(s.period_start_ms).unwrap_or_default();
    let end = rfc3339(s.period_end_ms).unwrap_or_default();
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
                &rfc3339(e.created_at).unwrap_or_default(),
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

#[derive(Deserialize, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// From this time: RFC 3339, `YYYY-MM-DD` (UTC) or unix seconds.
    #[param(example = "2026-11-01")]
    from: Option<String>,
    /// Until this time; a date includes that whole day.
    to: Option<String>,
    /// Only this key's requests.
    #[param(value_type = Option<i64>)]
    key_id: Option<String>,
    /// The model or alias asked for, or the model that served it.
    model: Option<String>,
    /// An HTTP status (`429`), a class (`4xx`), or `error` for every non-2xx.
    #[param(example = "error")]
    status: Option<String>,
    /// Page size, 1 to 500 (default 50). Not used by the CSV export.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 500)]
    limit: Option<String>,
    /// `next_before` of the previous page. Not used by the CSV export.
    #[param(value_type = Option<i64>)]
    before: Option<String>,
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
    let int = |field: &str, v: &Option<String>| -> Result<Option<i64>, ApiError> {
        v.as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.trim()
                    .parse::<i64>()
                    .map_err(|_| ApiError::Unprocessable(format!("{field} must be an integer")))
            })
            .transpose()
    };
    Ok(LogFilter {
        from: nonempty(&q.from)
            .map(|s| parse_bound("from", s, false))
            .transpose()?,
        to: nonempty(&q.to)
            .map(|s| parse_bound("to", s, true))
            .transpose()?,
        key_id: int("key_id", &q.key_id)?,
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

fn log_view(r: &LogRow, names: &HashMap<i64, String>) -> Value {
    let rec = &r.record;
    let attempts: Value = rec
        .attempts_json
        .as_ref()
        .and_then(|a| serde_json::to_value(a).ok())
        .unwrap_or(Value::Null);
    json!({
        "id": r.id,
        "request_id": rec.request_id,
        "created_at": rfc3339(rec.created_at),
        "key_id": rec.key_id,
        "key_name": names.get(&rec.key_id),
        "endpoint": rec.endpoint,
        "model": rec.model,
        "served_model": rec.served_model,
        "provider": rec.provider,
        "stream": rec.stream,
        "status": rec.status,
        "error_type": rec.error_type,
        "error_message": rec.error_message,
        "tokens_in": rec.tokens_in,
        "tokens_out": rec.tokens_out,
        "cached_tokens": rec.cached_tokens,
        "cost_usd": format_exact(rec.cost_nano),
        "cost_nano": rec.cost_nano,
        "latency_ms": rec.latency_ms,
        "ttfb_ms": rec.ttfb_ms,
        "attempts": rec.attempts,
        "attempts_detail": attempts,
    })
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
    ApiQuery(q): ApiQuery<LogQuery>,
) -> Result<Json<Value>, ApiError> {
    let filter = log_filter(&q)?;
    let limit = match q.limit.as_deref() {
        None | Some("") => 50,
        Some(l) => l
            .parse::<i64>()
            .ok()
            .filter(|l| (1..=500).contains(l))
            .ok_or_else(|| ApiError::Unprocessable("limit must be from 1 to 500".into()))?,
    };
    let before = q
        .before
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<i64>()
                .map_err(|_| ApiError::Unprocessable("before must be a log id".into()))
        })
        .transpose()?;
    let rows = usage::logs_page(&state.db, u.id, &filter, before, limit).await?;
    let names = key_names(&state.db, u.id).await?;
    let next = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.id))
        .flatten();
    Ok(Json(json!({
        "data": rows.iter().map(|r| log_view(r, &names)).collect::<Vec<_>>(),
        "next_before": next,
    })))
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
) -> Result<Json<Value>, ApiError> {
    let row = usage::log_by_request_id(&state.db, u.id, &request_id).await?;
    let names = key_names(&state.db, u.id).await?;
    Ok(Json(log_view(&row, &names)))
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
            rfc3339(rec.created_at).unwrap_or_default(),
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
/// The filtered log as RFC 4180 CSV, streamed (any number of rows). Text a person typed is
/// prefixed with `'` when a spreadsheet would evaluate it.
#[utoipa::path(get, path = "/me/request-logs.csv", tag = "Billing", operation_id = "export_request_logs_csv",
    security(("access_token" = []), ("session_cookie" = [])),
    params(LogQuery),
    responses((status = 200, description = "The log as CSV.", content_type = "text/csv", body = String),
        BadRequest, Unauthorized, Unprocessable))]
async fn export_logs(
    CurrentUser(u): CurrentUser,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<LogQuery>,
) -> Result<Response, ApiError> {
    let filter = log_filter(&q)?;
    let names = key_names(&state.db, u.id).await?;
    let mut header = String::new();
    csv::record(&mut header, &LOG_CSV_HEADER);
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
        before: None,
        header: Some(header),
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
    Path(provider_name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
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
            "ignored"
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
                    "credited"
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
                        "disputed"
                    } else {
                        "refunded"
                    }
                }
                Applied::DuplicateEvent => "duplicate",
                Applied::AlreadyPaid => "already_paid",
                Applied::Marked => "updated",
                Applied::UnknownPayment => "unknown_payment",
                Applied::Mismatch => "mismatch",
                Applied::Unchanged => "unchanged",
            }
        }
    };
    Ok((
        StatusCode::OK,
        Json(json!({"received": true, "event": event.id, "result": result})),
    )
        .into_response())
}
