-- tokengate schema (SQLite). Money is integer nano-USD; times are unix milliseconds.
-- Keep in step with migrations/postgres/0001_init.sql.

CREATE TABLE users (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    email           TEXT NOT NULL,
    email_lower     TEXT NOT NULL UNIQUE,
    display_name    TEXT NOT NULL,
    password_hash   TEXT,
    role            TEXT NOT NULL DEFAULT 'user',
    status          TEXT NOT NULL DEFAULT 'active',
    balance_nano    INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);

CREATE TABLE oidc_identities (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id     INTEGER NOT NULL REFERENCES users(id),
    issuer      TEXT NOT NULL,
    subject     TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    UNIQUE (issuer, subject)
);

CREATE TABLE key_groups (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    name                TEXT NOT NULL UNIQUE,
    allowed_providers   TEXT,
    allowed_models      TEXT,
    created_at          INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id             INTEGER NOT NULL REFERENCES users(id),
    name                TEXT NOT NULL,
    key_prefix          TEXT NOT NULL,
    key_hash            TEXT NOT NULL UNIQUE,
    status              TEXT NOT NULL DEFAULT 'active',
    group_id            INTEGER REFERENCES key_groups(id),
    allowed_models      TEXT,
    spend_limit_nano    INTEGER,
    spent_nano          INTEGER NOT NULL DEFAULT 0,
    rpm                 INTEGER,
    tpm                 INTEGER,
    expires_at          INTEGER,
    last_used_at        INTEGER,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL
);
CREATE INDEX api_keys_user ON api_keys(user_id);
CREATE INDEX api_keys_updated ON api_keys(updated_at);

CREATE TABLE ledger_entries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id         INTEGER NOT NULL REFERENCES users(id),
    kind            TEXT NOT NULL,
    amount_nano     INTEGER NOT NULL,
    balance_after   INTEGER NOT NULL,
    reference       TEXT,
    note            TEXT,
    created_by      INTEGER,
    created_at      INTEGER NOT NULL
);
CREATE INDEX ledger_user_time ON ledger_entries(user_id, created_at);

CREATE TABLE providers (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL UNIQUE,
    kind        TEXT NOT NULL,
    base_url    TEXT,
    api_key_enc TEXT,
    config      TEXT NOT NULL DEFAULT '{}',
    enabled     INTEGER NOT NULL DEFAULT 1,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE models (
    id                      INTEGER PRIMARY KEY AUTOINCREMENT,
    name                    TEXT NOT NULL UNIQUE,
    provider_id             INTEGER NOT NULL REFERENCES providers(id),
    upstream_model          TEXT NOT NULL,
    input_price_nano        INTEGER NOT NULL,
    output_price_nano       INTEGER NOT NULL,
    cache_read_price_nano   INTEGER,
    cache_write_price_nano  INTEGER,
    max_output_tokens       INTEGER NOT NULL DEFAULT 4096,
    complexity_tier         TEXT NOT NULL DEFAULT 'standard',
    enabled                 INTEGER NOT NULL DEFAULT 1,
    created_at              INTEGER NOT NULL,
    updated_at              INTEGER NOT NULL
);

CREATE TABLE aliases (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    name            TEXT NOT NULL UNIQUE,
    description     TEXT NOT NULL DEFAULT '',
    complexity_tier TEXT NOT NULL DEFAULT 'standard',
    enabled         INTEGER NOT NULL DEFAULT 1,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);

CREATE TABLE alias_targets (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    alias_id    INTEGER NOT NULL REFERENCES aliases(id) ON DELETE CASCADE,
    model_id    INTEGER NOT NULL REFERENCES models(id),
    priority    INTEGER NOT NULL DEFAULT 0,
    weight      INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX alias_targets_alias ON alias_targets(alias_id);

CREATE TABLE request_logs (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id      TEXT NOT NULL,
    user_id         INTEGER NOT NULL,
    key_id          INTEGER NOT NULL,
    endpoint        TEXT NOT NULL,
    model           TEXT NOT NULL,
    served_model    TEXT,
    provider        TEXT,
    stream          INTEGER NOT NULL DEFAULT 0,
    status          INTEGER NOT NULL,
    error_type      TEXT,
    error_message   TEXT,
    tokens_in       INTEGER NOT NULL DEFAULT 0,
    tokens_out      INTEGER NOT NULL DEFAULT 0,
    cached_tokens   INTEGER NOT NULL DEFAULT 0,
    cost_nano       INTEGER NOT NULL DEFAULT 0,
    latency_ms      INTEGER NOT NULL DEFAULT 0,
    ttfb_ms         INTEGER,
    attempts        INTEGER NOT NULL DEFAULT 1,
    attempts_json   TEXT,
    created_at      INTEGER NOT NULL
);
CREATE INDEX request_logs_user_time ON request_logs(user_id, created_at);
CREATE INDEX request_logs_key_time ON request_logs(key_id, created_at);
