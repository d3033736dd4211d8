//! Demo seed: on a fresh database, an admin with $5.00 of promotional credit, the mock
//! provider with a few models and the `tokengate-fast` alias, and one API key.

use crate::accounts::{self, EntryKind, Role, User};
use crate::catalog::{self, ModelSpec, ProviderKind, ProviderSpec, TargetSpec};
use crate::keys::{self, NewKey};
use crate::money::NANOS_PER_USD;
use crate::{Db, Error};

/// Email of the demo admin.
pub const DEMO_EMAIL: &str = "admin@tokengate.local";

/// What a first demo start created; printed once to the console.
#[derive(Debug)]
pub struct DemoSeed {
    pub admin: User,
    pub password: String,
    pub raw_key: String,
}

/// The mock provider and its models: (name, upstream, input $/M, output $/M, tier).
const MOCK_MODELS: &[(&str, &str, i64, i64, &str)] = &[
    ("mock/fast-1", "fast-1", 150_000_000, 600_000_000, "fast"),
    (
        "mock/smart-1",
        "smart-1",
        2_500_000_000,
        10_000_000_000,
        "premium",
    ),
    (
        "mock/coder-1",
        "coder-1",
        1_000_000_000,
        4_000_000_000,
        "coding",
    ),
];

/// Seeds the mock catalog (idempotent; safe on every start).
pub async fn seed_mock_catalog(db: &Db) -> Result<(), Error> {
    catalog::upsert_provider(
        db,
        &ProviderSpec {
            name: "mock".into(),
            kind: ProviderKind::Mock,
            base_url: None,
            api_key_enc: None,
            config: serde_json::json!({}),
            enabled: true,
        },
    )
    .await?;
    for (name, upstream, input, output, tier) in MOCK_MODELS {
        catalog::upsert_model(
            db,
            &ModelSpec {
                name: (*name).into(),
                provider: "mock".into(),
                upstream_model: (*upstream).into(),
                input_price_nano: *input,
                output_price_nano: *output,
                cache_read_price_nano: Some(input / 2),
                cache_write_price_nano: None,
                max_output_tokens: 4096,
                complexity_tier: (*tier).into(),
                enabled: true,
            },
        )
        .await?;
    }
    catalog::upsert_alias(
        db,
        "tokengate-fast",
        "Fast, cheap answers",
        "fast",
        &[TargetSpec {
            model: "mock/fast-1".into(),
            priority: 0,
            weight: 1,
        }],
    )
    .await?;
    Ok(())
}

/// Creates the demo admin, credit and key when the demo admin does not exist yet.
/// `hash_password` turns the generated password into the stored hash.
pub async fn seed_if_new(
    db: &Db,
    key_secret: &[u8],
    password: String,
    password_hash: &str,
) -> Result<Option<DemoSeed>, Error> {
    seed_mock_catalog(db).await?;
    let admin = match accounts::create_user(
        db,
        DEMO_EMAIL,
        "Demo Admin",
        Some(password_hash),
        Role::Admin,
    )
    .await
    {
        Ok(u) => u,
        Err(Error::Conflict(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    // Created by the server for its operator, like `tokengate-server admin create`.
    crate::auth::mark_email_verified(db, admin.id).await?;
    accounts::apply_entry(
        db,
        accounts::Entry {
            user_id: admin.id,
            kind: EntryKind::Promo,
            amount_nano: 5 * NANOS_PER_USD,
            reference: Some("demo"),
            note: Some("demo credit"),
            created_by: None,
            refuse_negative: false,
        },
    )
    .await?;
    let (_, raw_key) = keys::create(
        db,
        key_secret,
        admin.id,
        &NewKey {
            name: "demo".into(),
            ..NewKey::default()
        },
    )
    .await?;
    let admin = accounts::get_user(db, admin.id).await?;
    Ok(Some(DemoSeed {
        admin,
        password,
        raw_key,
    }))
}

/// Accounts other than the demo admin. Demo mode refuses to start on a database that has
/// any: it would add an administrator whose password is printed on the console, and a
/// funded key, to a database that real people use.
pub async fn other_accounts(db: &Db) -> Result<i64, Error> {
    Ok(sqlx::query_scalar(
        "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM users WHERE email_lower <> $1",
    )
    .bind(DEMO_EMAIL)
    .fetch_one(db.pool())
    .await?)
}
