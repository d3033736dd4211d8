//! Rows read back through core's `sqlx::FromRow` readers, on SQLite and on PostgreSQL:
//! statuses, roles and kinds come back as the enums they were written as (stored as the
//! same strings as always), a string no enum knows is refused, and the request log's
//! typed attempt list is stored as the JSON it always was.
//!
//! The PostgreSQL cases run on a database of their own created on the server named by
//! `TOKENGATE_TEST_PG` (e.g. `postgres://postgres@127.0.0.1:5432/test`, which
//! `scripts/test.sh` sets); without it they are skipped with a printed reason.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;

use serde_json::json;
use tokengate_core::accounts::{self, EntryKind, Role, UserStatus};
use tokengate_core::auth::{self, GrantStatus, NewGrant, Poll, RefreshGrant, RefreshRefusal};
use tokengate_core::catalog::{self, ModelSpec, ProviderKind, ProviderSpec, TargetSpec};
use tokengate_core::keys::{self, KeyPatch, KeyStatus, NewKey};
use tokengate_core::payments::{self, Applied, NewPayment, Outcome, PaymentStatus};
use tokengate_core::usage::{self, AttemptOutcome, FailureKind, RequestRecord, UpstreamAttempt};
use tokengate_core::{Db, Error, now_ms, statements};

/// A fresh SQLite database in a file of its own (an in-memory one would be one database
/// per pooled connection).
async fn on_sqlite<F, Fut>(case: F)
where
    F: FnOnce(Db) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = std::env::temp_dir().join(format!(
        "tg-core-rows-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let db = Db::connect(&format!("sqlite://{}/t.db", dir.display()))
        .await
        .unwrap();
    case(db.clone()).await;
    db.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A fresh PostgreSQL database, dropped afterwards (also when the case fails).
async fn on_postgres<F, Fut>(case: F)
where
    F: FnOnce(Db) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Ok(admin_url) = std::env::var("TOKENGATE_TEST_PG") else {
        eprintln!(
            "skipped: the PostgreSQL case needs TOKENGATE_TEST_PG \
             (e.g. postgres://postgres@127.0.0.1:5432/test); scripts/test.sh sets it"
        );
        return;
    };
    let name = format!("tg_core_{}_{}", std::process::id(), rand::random::<u32>());
    let admin = sqlx::PgPool::connect(&admin_url)
        .await
        .expect("PostgreSQL named by TOKENGATE_TEST_PG");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .unwrap();
    let base = admin_url.rsplit_once('/').unwrap().0.to_string();
    let url = format!("{base}/{name}");
    // Run in a task so that a failing case still reaches the DROP below.
    let outcome = tokio::spawn(async move {
        let db = Db::connect(&url).await.unwrap();
        case(db.clone()).await;
        db.close().await;
    })
    .await;
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&admin)
        .await
        .unwrap();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// One case on both databases: `<case>_sqlite` and `<case>_postgres`.
macro_rules! on_both {
    ($case:ident, $sqlite:ident, $postgres:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $sqlite() {
            on_sqlite($case).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $postgres() {
            on_postgres($case).await;
        }
    };
}

fn is_decode_error(e: &Error) -> bool {
    matches!(e, Error::Db(sqlx::Error::ColumnDecode { .. }))
}

async fn user(db: &Db, email: &str, role: Role) -> accounts::User {
    accounts::create_user(db, email, "Test", Some("hash"), role)
        .await
        .unwrap()
}

on_both!(
    users_and_ledger,
    users_and_ledger_sqlite,
    users_and_ledger_postgres
);
async fn users_and_ledger(db: Db) {
    let admin = user(&db, "ops@example.com", Role::Admin).await;
    let u = user(&db, "ada@example.com", Role::User).await;
    assert_eq!(
        (admin.role, admin.status),
        (Role::Admin, UserStatus::Active)
    );
    assert_eq!(accounts::get_user(&db, u.id).await.unwrap(), u);
    assert_eq!(u.role, Role::User);
    let (found, hash) = accounts::credentials(&db, "ADA@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((found, hash.as_deref()), (u.clone(), Some("hash")));
    assert_eq!(
        accounts::search_users(&db, "ada", 10).await.unwrap(),
        vec![u.clone()]
    );

    let suspended = accounts::set_status(&db, u.id, UserStatus::Suspended)
        .await
        .unwrap();
    assert_eq!(suspended.status, UserStatus::Suspended);
    let mut balances = accounts::all_balances(&db).await.unwrap();
    balances.sort_by_key(|b| b.0);
    assert_eq!(
        balances,
        vec![
            (admin.id, UserStatus::Active, 0),
            (u.id, UserStatus::Suspended, 0)
        ]
    );
    accounts::link_identity(&db, u.id, "https://idp", "sub-1")
        .await
        .unwrap();
    assert_eq!(
        accounts::user_by_identity(&db, "https://idp", "sub-1")
            .await
            .unwrap()
            .map(|u| u.status),
        Some(UserStatus::Suspended)
    );

    // Every kind of entry is stored and read back as itself.
    let amounts = [
        (EntryKind::Topup, 5_000),
        (EntryKind::Promo, 1_000),
        (EntryKind::Adjustment, -100),
        (EntryKind::Refund, -200),
        (EntryKind::Dispute, -300),
        (EntryKind::Usage, -50),
    ];
    for (kind, amount_nano) in amounts {
        accounts::apply_entry(
            &db,
            accounts::Entry {
                user_id: u.id,
                kind,
                amount_nano,
                reference: None,
                note: Some("n"),
                created_by: Some(admin.id),
                refuse_negative: false,
            },
        )
        .await
        .unwrap();
    }
    let entries = accounts::ledger_entries(&db, u.id, None, 100)
        .await
        .unwrap();
    let read: Vec<(EntryKind, i64)> = entries
        .iter()
        .rev()
        .map(|e| (e.kind, e.amount_nano))
        .collect();
    assert_eq!(read, amounts);
    assert_eq!(
        entries[0].balance_after,
        5_000 + 1_000 - 100 - 200 - 300 - 50
    );
    assert_eq!(entries[0].created_by, Some(admin.id));
    let stored: Vec<String> =
        sqlx::query_scalar("SELECT kind FROM ledger_entries WHERE user_id = $1 ORDER BY id")
            .bind(u.id)
            .fetch_all(db.pool())
            .await
            .unwrap();
    assert_eq!(
        stored,
        ["topup", "promo", "adjustment", "refund", "dispute", "usage"]
    );
    assert!(accounts::verify_ledger(&db, None).await.unwrap().is_empty());
    sqlx::query("UPDATE users SET balance_nano = balance_nano + 1 WHERE id = $1")
        .bind(u.id)
        .execute(db.pool())
        .await
        .unwrap();
    let off = accounts::verify_ledger(&db, Some(u.id)).await.unwrap();
    assert_eq!(off.len(), 1);
    assert_eq!(
        (off[0].user_id, off[0].balance_nano - off[0].ledger_sum_nano),
        (u.id, 1)
    );

    let s = statements::monthly(&db, u.id, statements::Month::of_ms(now_ms()))
        .await
        .unwrap();
    assert_eq!(s.topups_nano, 5_000);
    assert_eq!(s.adjustments_nano, 1_000 - 100 - 200 - 300);
    assert_eq!(s.usage_ledger_nano, -50);
    assert!(s.credits.iter().all(|e| e.kind != EntryKind::Usage));

    // A word no enum knows is refused, not passed on.
    sqlx::query("UPDATE users SET status = 'frozen' WHERE id = $1")
        .bind(u.id)
        .execute(db.pool())
        .await
        .unwrap();
    let err = accounts::get_user(&db, u.id).await.unwrap_err();
    assert!(is_decode_error(&err), "{err:?}");
    assert!(accounts::all_balances(&db).await.is_err());
    sqlx::query("UPDATE users SET status = 'active', role = 'owner' WHERE id = $1")
        .bind(u.id)
        .execute(db.pool())
        .await
        .unwrap();
    assert!(is_decode_error(
        &accounts::get_user(&db, u.id).await.unwrap_err()
    ));
}

on_both!(api_keys, api_keys_sqlite, api_keys_postgres);
async fn api_keys(db: Db) {
    let u = user(&db, "keys@example.com", Role::User).await;
    let secret = b"0123456789abcdef0123456789abcdef";
    let new = NewKey {
        name: "ci".into(),
        allowed_models: Some(vec!["mock/*".into(), "tokengate-fast".into()]),
        spend_limit_nano: Some(9_000),
        rpm: Some(60),
        ..NewKey::default()
    };
    let (key, raw) = keys::create(&db, secret, u.id, &new).await.unwrap();
    assert!(keys::well_formed(&raw));
    assert_eq!(key.status, KeyStatus::Active);
    assert_eq!(key.allowed_models, new.allowed_models);
    assert_eq!(key.key_hash, hex::encode(keys::hash(secret, &raw)));
    assert_eq!(keys::get_for_user(&db, u.id, key.id).await.unwrap(), key);
    assert_eq!(keys::limited_spend(&db).await.unwrap(), vec![(key.id, 0)]);

    let patch = |status| KeyPatch {
        status: Some(status),
        ..KeyPatch::default()
    };
    let off = keys::update(&db, u.id, key.id, &patch(KeyStatus::Disabled))
        .await
        .unwrap();
    assert_eq!(off.status, KeyStatus::Disabled);
    assert!(!off.usable_at(now_ms()));
    assert!(keys::limited_spend(&db).await.unwrap().is_empty());
    // Revoking is its own operation, not a patch.
    assert!(matches!(
        keys::update(&db, u.id, key.id, &patch(KeyStatus::Revoked)).await,
        Err(Error::Invalid(_))
    ));
    let on = keys::update(&db, u.id, key.id, &patch(KeyStatus::Active))
        .await
        .unwrap();
    assert!(on.usable_at(now_ms()));
    let (rotated, raw2) = keys::rotate(&db, secret, u.id, key.id).await.unwrap();
    assert_ne!(raw2, raw);
    assert_eq!(rotated.status, KeyStatus::Active);

    let revoked = keys::revoke(&db, u.id, key.id).await.unwrap();
    assert_eq!(revoked.status, KeyStatus::Revoked);
    assert!(matches!(
        keys::update(&db, u.id, key.id, &patch(KeyStatus::Active)).await,
        Err(Error::Conflict(_))
    ));
    let listed = keys::list_for_user(&db, u.id).await.unwrap();
    assert_eq!(listed, vec![revoked.clone()]);
    assert_eq!(keys::changed_since(&db, 0).await.unwrap(), vec![revoked]);
    let stored: String = sqlx::query_scalar("SELECT status FROM api_keys WHERE id = $1")
        .bind(key.id)
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(stored, "revoked");
    assert!(matches!(
        keys::get_for_user(&db, u.id + 1, key.id).await,
        Err(Error::NotFound)
    ));

    sqlx::query("UPDATE api_keys SET status = 'paused' WHERE id = $1")
        .bind(key.id)
        .execute(db.pool())
        .await
        .unwrap();
    let err = keys::list_for_user(&db, u.id).await.unwrap_err();
    assert!(is_decode_error(&err), "{err:?}");
}

on_both!(
    grants_and_refresh,
    grants_and_refresh_sqlite,
    grants_and_refresh_postgres
);
async fn grants_and_refresh(db: Db) {
    let u = user(&db, "dev@example.com", Role::User).await;
    let grant = |hash: &'static str, code: &'static str| NewGrant {
        device_code_hash: hash,
        user_code: code,
        client_id: "tokengate-cli",
        scope: "account",
        resource: "https://gw.example",
        interval_secs: 0,
        expires_at: now_ms() + 600_000,
    };
    auth::create_grant(&db, &grant("h1", "AAAA-BBBB"))
        .await
        .unwrap();
    let g = auth::grant_by_user_code(&db, "AAAA-BBBB")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(g.status, GrantStatus::Pending);
    assert_eq!(g.user_id, None);
    assert_eq!(
        auth::poll_grant(&db, "h1", "tokengate-cli").await.unwrap(),
        Poll::Pending
    );
    auth::decide_grant(&db, "AAAA-BBBB", Some(u.id), Some("account"))
        .await
        .unwrap();
    assert_eq!(
        auth::grant_by_user_code(&db, "AAAA-BBBB")
            .await
            .unwrap()
            .unwrap()
            .status,
        GrantStatus::Approved
    );
    match auth::poll_grant(&db, "h1", "tokengate-cli").await.unwrap() {
        Poll::Approved(g) => {
            assert_eq!((g.status, g.user_id), (GrantStatus::Used, Some(u.id)));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        auth::poll_grant(&db, "h1", "tokengate-cli").await.unwrap(),
        Poll::Unknown
    );
    auth::create_grant(&db, &grant("h2", "CCCC-DDDD"))
        .await
        .unwrap();
    auth::decide_grant(&db, "CCCC-DDDD", None, None)
        .await
        .unwrap();
    assert_eq!(
        auth::poll_grant(&db, "h2", "tokengate-cli").await.unwrap(),
        Poll::Denied
    );

    let family = RefreshGrant {
        family: "fam-1".into(),
        user_id: u.id,
        client_id: "tokengate-cli".into(),
        scope: "account".into(),
        resource: "https://gw.example".into(),
    };
    auth::store_refresh(&db, "r1", &family, now_ms() + 600_000)
        .await
        .unwrap();
    assert_eq!(
        auth::rotate_refresh(&db, "r1", "tokengate-cli")
            .await
            .unwrap(),
        Ok(family.clone())
    );
    assert_eq!(
        auth::rotate_refresh(&db, "r1", "tokengate-cli")
            .await
            .unwrap(),
        Err(RefreshRefusal::Reused)
    );
    assert_eq!(
        auth::rotate_refresh(&db, "r1", "other-client")
            .await
            .unwrap(),
        Err(RefreshRefusal::Unknown)
    );
    auth::store_refresh(&db, "r2", &family, now_ms() - 1)
        .await
        .unwrap();
    assert_eq!(
        auth::rotate_refresh(&db, "r2", "tokengate-cli")
            .await
            .unwrap(),
        Err(RefreshRefusal::Expired)
    );

    assert_eq!(
        auth::user_sessions(&db, u.id).await.unwrap(),
        Vec::<(String, i64, i64)>::new()
    );
    let session = auth::SessionRow {
        user_id: Some(u.id),
        data: "{}".into(),
        created_at: 1,
        expires_at: now_ms() + 60_000,
    };
    auth::save_session(&db, "s1", &session).await.unwrap();
    assert_eq!(
        auth::load_session(&db, "s1").await.unwrap(),
        Some(session.clone())
    );
    assert_eq!(
        auth::user_sessions(&db, u.id).await.unwrap(),
        vec![("s1".to_string(), 1, session.expires_at)]
    );

    sqlx::query("UPDATE device_grants SET status = 'lost' WHERE user_code = 'CCCC-DDDD'")
        .execute(db.pool())
        .await
        .unwrap();
    let err = auth::grant_by_user_code(&db, "CCCC-DDDD")
        .await
        .unwrap_err();
    assert!(is_decode_error(&err), "{err:?}");
}

on_both!(payment_rows, payment_rows_sqlite, payment_rows_postgres);
async fn payment_rows(db: Db) {
    let u = user(&db, "pay@example.com", Role::User).await;
    let new = |session_id| NewPayment {
        user_id: u.id,
        provider: "stripe",
        session_id,
        amount_nano: 5_000_000_000,
        checkout_url: "https://checkout.example/x",
        expires_at: Some(1),
    };
    let p = payments::create_pending(&db, &new("cs_1")).await.unwrap();
    assert_eq!(p.status, PaymentStatus::Pending);
    payments::create_pending(&db, &new("cs_2")).await.unwrap();
    let paid = Outcome::Paid {
        session_id: "cs_1".into(),
        user_id: Some(u.id),
        amount_nano: Some(5_000_000_000),
        currency: Some("usd".into()),
        payment_intent: Some("pi_1".into()),
    };
    assert!(matches!(
        payments::apply_event(&db, "stripe", "evt_1", "checkout.session.completed", &paid)
            .await
            .unwrap(),
        Applied::Credited { .. }
    ));
    assert_eq!(
        payments::apply_event(&db, "stripe", "evt_2", "checkout.session.completed", &paid)
            .await
            .unwrap(),
        Applied::AlreadyPaid
    );
    let failed = Outcome::Failed {
        session_id: "cs_2".into(),
    };
    assert_eq!(
        payments::apply_event(&db, "stripe", "evt_3", "payment_failed", &failed)
            .await
            .unwrap(),
        Applied::Marked
    );
    let refund = Outcome::Refunded {
        charge_id: "ch_1".into(),
        payment_intent: Some("pi_1".into()),
        refunded_nano: 1_000_000_000,
        currency: Some("usd".into()),
    };
    assert!(matches!(
        payments::apply_event(&db, "stripe", "evt_4", "charge.refunded", &refund)
            .await
            .unwrap(),
        Applied::Debited {
            kind: EntryKind::Refund,
            amount_nano: 1_000_000_000,
            ..
        }
    ));
    let list = payments::list_for_user(&db, u.id).await.unwrap();
    let statuses: Vec<(String, PaymentStatus)> = list
        .iter()
        .map(|p| (p.session_id.clone(), p.status))
        .collect();
    assert_eq!(
        statuses,
        [
            ("cs_2".to_string(), PaymentStatus::Failed),
            ("cs_1".to_string(), PaymentStatus::Paid)
        ]
    );
    let one = payments::get_for_user(&db, u.id, p.id).await.unwrap();
    assert_eq!(
        (one.refunded_nano, one.payment_intent.as_deref()),
        (1_000_000_000, Some("pi_1"))
    );
    let kinds: Vec<EntryKind> = accounts::ledger_entries(&db, u.id, None, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, [EntryKind::Refund, EntryKind::Topup]);
}

on_both!(catalog_rows, catalog_rows_sqlite, catalog_rows_postgres);
async fn catalog_rows(db: Db) {
    let spec = |name: &str, kind, base_url: Option<&str>| ProviderSpec {
        name: name.into(),
        kind,
        base_url: base_url.map(Into::into),
        api_key_enc: None,
        config: json!({"latency_ms": 5}),
        enabled: true,
    };
    catalog::upsert_provider(&db, &spec("m", ProviderKind::Mock, None))
        .await
        .unwrap();
    catalog::upsert_provider(
        &db,
        &spec("o", ProviderKind::OpenAi, Some("https://o.example/v1")),
    )
    .await
    .unwrap();
    let mut a = spec("a", ProviderKind::Anthropic, Some("https://a.example"));
    a.enabled = false;
    catalog::upsert_provider(&db, &a).await.unwrap();
    // Every kind but the mock needs somewhere to send requests.
    for kind in [ProviderKind::OpenAi, ProviderKind::Anthropic] {
        assert!(matches!(
            catalog::upsert_provider(&db, &spec("x", kind, None)).await,
            Err(Error::Invalid(_))
        ));
    }
    catalog::upsert_model(
        &db,
        &ModelSpec {
            name: "m/fast".into(),
            provider: "m".into(),
            upstream_model: "fast".into(),
            input_price_nano: 10,
            output_price_nano: 20,
            cache_read_price_nano: Some(5),
            cache_write_price_nano: None,
            max_output_tokens: 128,
            complexity_tier: "fast".into(),
            enabled: true,
        },
    )
    .await
    .unwrap();
    catalog::upsert_alias(
        &db,
        "quick",
        "d",
        "fast",
        &[TargetSpec {
            model: "m/fast".into(),
            priority: 1,
            weight: 3,
        }],
    )
    .await
    .unwrap();
    catalog::upsert_key_group(&db, "ci", Some(&["m".to_string()]), None)
        .await
        .unwrap();

    let c = catalog::load(&db).await.unwrap();
    let kinds: Vec<(&str, ProviderKind, bool)> = c
        .providers
        .iter()
        .map(|p| (p.name.as_str(), p.kind, p.enabled))
        .collect();
    assert_eq!(
        kinds,
        [
            ("m", ProviderKind::Mock, true),
            ("o", ProviderKind::OpenAi, true),
            ("a", ProviderKind::Anthropic, false)
        ]
    );
    assert_eq!(c.providers[0].config, json!({"latency_ms": 5}));
    let m = &c.models[0];
    assert_eq!(
        (
            m.name.as_str(),
            m.provider_id,
            m.cache_read_price_nano,
            m.enabled
        ),
        ("m/fast", c.providers[0].id, Some(5), true)
    );
    assert_eq!(c.aliases[0].targets.len(), 1);
    assert_eq!(
        (
            c.aliases[0].targets[0].model_id,
            c.aliases[0].targets[0].weight
        ),
        (m.id, 3)
    );
    assert_eq!(
        c.key_groups[0].allowed_providers,
        Some(vec!["m".to_string()])
    );
    assert_eq!(c.key_groups[0].allowed_models, None);
    let stored: Vec<String> = sqlx::query_scalar("SELECT kind FROM providers ORDER BY id")
        .fetch_all(db.pool())
        .await
        .unwrap();
    assert_eq!(stored, ["mock", "openai", "anthropic"]);

    catalog::delete_alias(&db, "quick").await.unwrap();
    assert!(matches!(
        catalog::delete_provider(&db, "m").await,
        Err(Error::Conflict(_))
    ));
    sqlx::query("UPDATE providers SET kind = 'gemini' WHERE name = 'o'")
        .execute(db.pool())
        .await
        .unwrap();
    let err = catalog::load(&db).await.unwrap_err();
    assert!(is_decode_error(&err), "{err:?}");
}

fn record(user_id: i64, request_id: &str) -> RequestRecord {
    RequestRecord {
        request_id: request_id.into(),
        user_id,
        key_id: 7,
        endpoint: "/v1/chat/completions".into(),
        model: "quick".into(),
        served_model: Some("b/m".into()),
        provider: Some("b".into()),
        stream: true,
        status: 200,
        tokens_in: 10,
        tokens_out: 5,
        cost_nano: 30,
        latency_ms: 40,
        ttfb_ms: Some(12),
        attempts: 2,
        attempts_json: Some(vec![
            UpstreamAttempt::new("a", "a/m", "skipped: circuit open".into(), 0),
            UpstreamAttempt::new("b", "b/m", AttemptOutcome::Status(200), 35),
        ]),
        created_at: now_ms(),
        ..RequestRecord::default()
    }
}

on_both!(
    request_log_rows,
    request_log_rows_sqlite,
    request_log_rows_postgres
);
async fn request_log_rows(db: Db) {
    let u = user(&db, "log@example.com", Role::User).await;
    let ok = record(u.id, "req_ok");
    let failed = RequestRecord {
        status: 502,
        error_type: Some(FailureKind::UpstreamError),
        error_message: Some("no upstream could answer".into()),
        attempts_json: Some(vec![UpstreamAttempt::new(
            "b",
            "b/m",
            AttemptOutcome::Status(503),
            9,
        )]),
        cost_nano: 0,
        stream: false,
        ..record(u.id, "req_failed")
    };
    usage::write_batch(&db, &[ok.clone(), failed.clone()])
        .await
        .unwrap();

    assert_eq!(
        usage::log_by_request_id(&db, u.id, "req_ok")
            .await
            .unwrap()
            .record,
        ok
    );
    assert_eq!(
        usage::log_by_request_id(&db, u.id, "req_failed")
            .await
            .unwrap()
            .record,
        failed
    );
    let (error_type, attempts): (Option<String>, Option<String>) = sqlx::query_as(
        "SELECT error_type, attempts_json FROM request_logs WHERE request_id = 'req_ok'",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(error_type, None);
    // The column holds the JSON the gateway always stored (`json!`, keys sorted).
    let before = json!([
        {"provider": "a", "model": "a/m", "outcome": "skipped: circuit open", "latency_ms": 0},
        {"provider": "b", "model": "b/m", "outcome": 200, "latency_ms": 35},
    ]);
    assert_eq!(attempts.as_deref(), Some(before.to_string().as_str()));
    let stored: Option<String> =
        sqlx::query_scalar("SELECT error_type FROM request_logs WHERE request_id = 'req_failed'")
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!(stored.as_deref(), Some("upstream_error"));

    let page = usage::logs_page(
        &db,
        u.id,
        &usage::LogFilter {
            status: Some(usage::StatusFilter::Error),
            ..Default::default()
        },
        None,
        10,
    )
    .await
    .unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].record.error_type, Some(FailureKind::UpstreamError));
    let totals = usage::totals_since(&db, u.id, 0).await.unwrap();
    assert_eq!(
        (
            totals.total_requests,
            totals.total_tokens_in,
            totals.total_cost_nano
        ),
        (1, 10, 30)
    );
    let (days, models, keys) = usage::breakdown_since(&db, u.id, 0).await.unwrap();
    assert_eq!(days.len(), 1);
    assert_eq!(days[0].key, statements::day_string(ok.created_at));
    assert_eq!(
        (
            models[0].key.as_str(),
            models[0].requests,
            models[0].tokens_out
        ),
        ("b/m", 1, 5)
    );
    assert_eq!((keys[0].key.as_str(), keys[0].cost_nano), ("7", 30));
    let seen = usage::existing_request_ids(&db, &["req_ok".into(), "req_x".into()])
        .await
        .unwrap();
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["req_ok"]);

    // A row written before the list was typed, with the too-long marker, reads back as
    // the marker; one whose list does not parse keeps its row and loses the detail.
    for (id, text) in [
        (
            "req_old",
            r#"[{"outcome":"attempt list too long to store"}]"#,
        ),
        ("req_bad", "not json"),
    ] {
        sqlx::query(
            "INSERT INTO request_logs (request_id, user_id, key_id, endpoint, model, status, \
             attempts_json, created_at) VALUES ($1, $2, 7, '/v1/embeddings', 'm', 200, $3, 1)",
        )
        .bind(id)
        .bind(u.id)
        .bind(text)
        .execute(db.pool())
        .await
        .unwrap();
    }
    let old = usage::log_by_request_id(&db, u.id, "req_old")
        .await
        .unwrap();
    assert_eq!(
        old.record.attempts_json,
        Some(vec![UpstreamAttempt::too_long()])
    );
    let bad = usage::log_by_request_id(&db, u.id, "req_bad")
        .await
        .unwrap();
    assert_eq!((bad.record.attempts_json, bad.record.status), (None, 200));

    sqlx::query("UPDATE request_logs SET error_type = 'exploded' WHERE request_id = 'req_failed'")
        .execute(db.pool())
        .await
        .unwrap();
    let err = usage::log_by_request_id(&db, u.id, "req_failed")
        .await
        .unwrap_err();
    assert!(is_decode_error(&err), "{err:?}");
}

#[test]
fn write_ahead_log_lines_of_either_form_read_back() {
    let typed = record(1, "req_1");
    let line = serde_json::to_value(&typed).unwrap();
    assert!(line["attempts_json"].is_array(), "{line}");
    assert_eq!(
        serde_json::from_value::<RequestRecord>(line.clone()).unwrap(),
        typed
    );
    // A line written when the list was JSON text.
    let mut old = line.clone();
    old["attempts_json"] = json!(line["attempts_json"].to_string());
    assert_eq!(serde_json::from_value::<RequestRecord>(old).unwrap(), typed);
    // The charge matters more than the detail: an unreadable list is dropped, the record
    // kept; a missing one is none.
    for detail in [json!("{broken"), json!(42), json!(null)] {
        let mut odd = line.clone();
        odd["attempts_json"] = detail;
        let r = serde_json::from_value::<RequestRecord>(odd).unwrap();
        assert_eq!((r.attempts_json, r.cost_nano), (None, typed.cost_nano));
    }
    let mut missing = line.clone();
    missing.as_object_mut().unwrap().remove("attempts_json");
    assert_eq!(
        serde_json::from_value::<RequestRecord>(missing)
            .unwrap()
            .attempts_json,
        None
    );
    let mut failed = line;
    failed["error_type"] = json!("client_closed");
    assert_eq!(
        serde_json::from_value::<RequestRecord>(failed.clone())
            .unwrap()
            .error_type,
        Some(FailureKind::ClientClosed)
    );
    failed["error_type"] = json!("exploded");
    assert!(serde_json::from_value::<RequestRecord>(failed).is_err());
}

#[test]
fn an_attempt_list_too_long_to_store_becomes_the_marker() {
    let mut r = record(1, "req_1");
    r.attempts_json = Some(
        (0..400)
            .map(|i| UpstreamAttempt::new(format!("p{i}"), "p/m".repeat(20), "x".into(), i))
            .collect(),
    );
    r.sanitize();
    assert_eq!(r.attempts_json, Some(vec![UpstreamAttempt::too_long()]));
    let mut r = record(1, "req_1");
    r.attempts_json = Some(vec![UpstreamAttempt::new("p\0", "m", "a\0b".into(), 1)]);
    r.sanitize();
    assert_eq!(
        r.attempts_json,
        Some(vec![UpstreamAttempt::new("p", "m", "ab".into(), 1)])
    );
    let q = RequestRecord {
        error_type: Some(FailureKind::UpstreamError),
        ..record(1, "req_2")
    }
    .quarantined();
    assert_eq!(
        (q.error_type, q.attempts_json),
        (Some(FailureKind::Quarantined), None)
    );
}
