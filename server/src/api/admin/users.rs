//! Admin users: search with balances, a user's ledger, an operator credit or debit (the
//! domain rules are `tokengate_core::billing::credit`; this handler adds the gateway's
//! view of money in flight), suspension and reactivation, and the ledger check
//! (balance = Σ entries).

use axum::extract::State;
use serde_json::{Map, Value};
use tokengate_api::admin::{
    AdminUserView, CreditRequest, CreditResult, LedgerEntryView, LedgerMismatch, LedgerQuery,
    LedgerVerify, UserLedger, UserSearchQuery, UserStatusChange, VerifyQuery,
};
use tokengate_api::kinds::UserStatus;
use tokengate_api::{Timestamp, Usd};
use tokengate_core::accounts;
use tokengate_core::billing::{self, Credit};
use tokengate_core::now_ms;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Reply, named};
use crate::AppState;
use crate::auth::AdminUser;
use crate::http::error::{AdminErrors, BadRequest, Conflict, NotFound, Unprocessable};
use crate::http::{ApiError, ApiJson, ApiPath, ApiQuery, typed_object};

/// Adds the user routes to `table`.
pub(super) fn routes(table: OpenApiRouter<AppState>) -> OpenApiRouter<AppState> {
    table
        .routes(routes!(search_users))
        .routes(routes!(user_ledger))
        .routes(routes!(credit))
        .routes(routes!(verify_ledger))
        .routes(routes!(suspend))
        .routes(routes!(reactivate))
}

fn user_view(u: &accounts::User) -> AdminUserView {
    AdminUserView {
        id: u.id,
        email: u.email.clone(),
        display_name: u.display_name.clone(),
        role: u.role,
        status: u.status,
        balance_usd: Usd(u.balance_nano),
        balance_nano: u.balance_nano,
        created_at: Timestamp(u.created_at),
    }
}

fn entry_view(e: &accounts::LedgerEntry) -> LedgerEntryView {
    LedgerEntryView {
        id: e.id,
        kind: e.kind,
        amount_usd: Usd(e.amount_nano),
        amount_nano: e.amount_nano,
        balance_after_usd: Usd(e.balance_after),
        reference: e.reference.clone(),
        note: e.note.clone(),
        created_by: e.created_by,
        created_at: Timestamp(e.created_at),
    }
}

async fn user_of(state: &AppState, id: i64) -> Result<accounts::User, ApiError> {
    accounts::get_user(&state.db, id)
        .await
        .map_err(|e| named(e, "user", &id.to_string()))
}

/// Search users
///
/// Users whose email or name contains `q`, with balances.
#[utoipa::path(get, path = "/users", operation_id = "admin_search_users",
    params(UserSearchQuery),
    responses((status = 200, description = "Users.", body = Vec<AdminUserView>), BadRequest, AdminErrors))]
async fn search_users(
    _: AdminUser,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<UserSearchQuery>,
) -> Reply<Vec<AdminUserView>> {
    let users = accounts::search_users(
        &state.db,
        q.q.as_deref().unwrap_or("").trim(),
        q.limit.unwrap_or(50),
    )
    .await?;
    Ok(ApiJson(users.iter().map(user_view).collect()))
}

/// A user's ledger
///
/// Ledger entries, newest first.
#[utoipa::path(get, path = "/users/{id}/ledger", operation_id = "admin_user_ledger",
    params(("id" = i64, Path, description = "The user's id"), LedgerQuery),
    responses((status = 200, description = "The ledger.", body = UserLedger), BadRequest, AdminErrors, NotFound))]
async fn user_ledger(
    _: AdminUser,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<LedgerQuery>,
) -> Reply<UserLedger> {
    let user = user_of(&state, id).await?;
    let entries = accounts::ledger_entries(&state.db, id, q.before, q.limit.unwrap_or(100)).await?;
    Ok(ApiJson(UserLedger {
        user: user_view(&user),
        entries: entries.iter().map(entry_view).collect(),
    }))
}

/// Credit or debit a user
///
/// An admin credit or debit (adjustment, refund, promotional credit) with a mandatory
/// reason, recorded in the ledger with the admin's id. A debit below zero is 409 unless
/// `allow_negative` is true.
#[utoipa::path(post, path = "/users/{id}/credit", operation_id = "admin_credit_user",
    params(("id" = i64, Path, description = "The user's id")),
    request_body = CreditRequest,
    responses((status = 200, description = "The ledger entry.", body = CreditResult), BadRequest, AdminErrors, NotFound, Conflict, Unprocessable))]
async fn credit(
    AdminUser(admin): AdminUser,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(raw): ApiJson<Map<String, Value>>,
) -> Reply<CreditResult> {
    let body: CreditRequest = typed_object(raw, &["amount_usd", "kind", "reason"])?;
    let amount = body
        .amount_usd
        .ok_or_else(|| ApiError::Unprocessable("amount_usd is required".into()))?
        .nanos();
    let c = Credit {
        user_id: id,
        amount_nano: amount,
        kind: billing::credit_kind(body.kind.as_deref())?,
        memo: body.reason.as_deref().unwrap_or(""),
        actor: admin.id,
        allow_negative: body.allow_negative,
    };
    c.check()?;
    // A debit must also fit what the gateway sees: costs settled but not yet flushed and
    // holds of requests in flight. Holding the debit while it is written keeps concurrent
    // requests from spending the same money.
    let conflict = || {
        ApiError::Conflict(
            "This debit would leave the balance below zero; pass allow_negative to force it."
                .into(),
        )
    };
    let hold = if amount < 0 && !body.allow_negative {
        if let Err(e) = state.gateway.reload_account(id).await {
            tracing::warn!(error = %e, "reloading an account before a debit failed");
        }
        match state.gateway.money.hold(id, 0, None, -amount) {
            Ok(h) => Some(h),
            // A suspended account spends nothing: the stored balance is the whole truth.
            Err(crate::gateway::money::Refusal::AccountInactive) => None,
            Err(_) => return Err(conflict()),
        }
    } else {
        None
    };
    let written = billing::credit(&state.db, c).await;
    if let Err(e) = state.gateway.reload_account(id).await {
        tracing::warn!(error = %e, "reloading an adjusted account failed; the periodic refresh will apply it");
    }
    if let Some(hold) = hold {
        state.gateway.money.settle(hold, 0);
    }
    let entry = written.map_err(|e| match e {
        tokengate_core::Error::InsufficientBalance => conflict(),
        other => named(other, "user", &id.to_string()),
    })?;
    tracing::info!(admin = admin.id, user = id, kind = entry.kind.as_str(), amount = %Usd(amount), "balance adjusted");
    Ok(ApiJson(CreditResult {
        user_id: id,
        kind: entry.kind,
        amount_usd: Usd(entry.amount_nano),
        balance_usd: Usd(entry.balance_after),
        balance_nano: entry.balance_after,
        entry_id: entry.id,
    }))
}

/// Verify the ledger
///
/// Checks balance = Σ ledger entries for every account (or one).
#[utoipa::path(get, path = "/ledger/verify", operation_id = "admin_verify_ledger",
    params(VerifyQuery),
    responses((status = 200, description = "The check.", body = LedgerVerify), BadRequest, AdminErrors, NotFound))]
async fn verify_ledger(
    _: AdminUser,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<VerifyQuery>,
) -> Reply<LedgerVerify> {
    let checked = match q.user_id {
        Some(id) => {
            user_of(&state, id).await?;
            1
        }
        None => accounts::all_balances(&state.db).await?.len() as i64,
    };
    let mismatches: Vec<LedgerMismatch> = accounts::verify_ledger(&state.db, q.user_id)
        .await?
        .into_iter()
        .map(|m| LedgerMismatch {
            user_id: m.user_id,
            balance_usd: Usd(m.balance_nano),
            balance_nano: m.balance_nano,
            ledger_sum_usd: Usd(m.ledger_sum_nano),
            ledger_sum_nano: m.ledger_sum_nano,
            difference_nano: m.balance_nano - m.ledger_sum_nano,
        })
        .collect();
    Ok(ApiJson(LedgerVerify {
        checked,
        ok: mismatches.is_empty(),
        mismatches,
    }))
}

async fn set_status(
    state: &AppState,
    admin: &accounts::User,
    id: i64,
    status: UserStatus,
) -> Reply<UserStatusChange> {
    if id == admin.id && status != UserStatus::Active {
        return Err(ApiError::Conflict(
            "You cannot suspend your own account.".into(),
        ));
    }
    let user = accounts::set_status(&state.db, id, status)
        .await
        .map_err(|e| named(e, "user", &id.to_string()))?;
    // Effective on the very next request of every key of this account.
    state
        .gateway
        .money
        .set_active(user.id, user.status == UserStatus::Active);
    tracing::info!(
        admin = admin.id,
        user = user.id,
        status = status.as_str(),
        "user status changed"
    );
    Ok(ApiJson(UserStatusChange {
        id: user.id,
        email: user.email,
        status: user.status,
        updated_at: Timestamp(now_ms()),
    }))
}

/// Suspend a user
///
/// Effective on the user's next request: keys answer 401, sessions and tokens stop working.
#[utoipa::path(post, path = "/users/{id}/suspend", operation_id = "admin_suspend_user",
    params(("id" = i64, Path, description = "The user's id")),
    responses((status = 200, description = "The new status.", body = UserStatusChange), AdminErrors, NotFound, Conflict))]
async fn suspend(
    AdminUser(admin): AdminUser,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Reply<UserStatusChange> {
    set_status(&state, &admin, id, UserStatus::Suspended).await
}

/// Reactivate a user
#[utoipa::path(post, path = "/users/{id}/reactivate", operation_id = "admin_reactivate_user",
    params(("id" = i64, Path, description = "The user's id")),
    responses((status = 200, description = "The new status.", body = UserStatusChange), AdminErrors, NotFound))]
async fn reactivate(
    AdminUser(admin): AdminUser,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Reply<UserStatusChange> {
    set_status(&state, &admin, id, UserStatus::Active).await
}
