-- tokengate schema (PostgreSQL). Money is integer nano-USD; times are unix milliseconds.
-- Keep in step with migrations/sqlite/0001_init.sql.

CREATE TABLE users (
    id              BIGSERIAL PRIMARY KEY,
    email           TEXT NOT NULL,
    email_lower     TEXT NOT NULL UNIQUE,
    display_name    TEXT NOT NULL,
    password_hash   TEXT,
    role            TEXT NOT NULL DEFAULT 'user',
    status          TEXT NOT NULL DEFAULT 'active',
    balance_nano    BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);

CREATE TABLE oidc_identities (
    id          BIGSERIAL PRIMARY KEY,
    user_id     BIGINT NOT NULL REFERENCES users(id),
    issuer      TEXT NOT NULL,
    subject     TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    UNIQUE (issuer, subject)
);

CREATE TABLE key_groups (
    id                  BIGSERIAL PRIMARY KEY,
    name                TEXT NOT NULL UNIQUE,
    allowed_providers   TEXT,
    allowed_models      TEXT,
    created_at          BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id                  BIGSERIAL PRIMARY KEY,
    user_id             BIGINT NOT NULL REFERENCES users(id),
    name                TEXT NOT NULL,
    key_prefix          TEXT NOT NULL,
    key_hash            TEXT NOT NULL UNIQUE,
    status              TEXT NOT NULL DEFAULT 'active',
    group_id            BIGINT REFERENCES key_groups(id),
    allowed_models      TEXT,
    spend_limit_nano    BIGINT,
    spent_nano          BIGINT NOT NULL DEFAULT 0,
    rpm                 BIGINT,
    tpm                 BIGINT,
    expires_at          BIGINT,
    last_used_at        BIGINT,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
);
CREATE INDEX api_keys_user ON api_keys(user_id);
CREATE INDEX api_keys_updated ON api_keys(updated_at);

CREATE TABLE ledger_entries (
    id              BIGSERIAL PRIMARY KEY,
    user_id         BIGINT NOT NULL REFERENCES users(id),
    kind            TEXT NOT NULL,
    amount_nano     BIGINT NOT NULL,
    balance_after   BIGINT NOT NULL,
    reference       TEXT,
    note            TEXT,
    created_by      BIGINT,
    created_at      BIGINT NOT NULL
);
CREATE INDEX ledger_user_time ON ledger_entries(user_id, created_at);

CREATE TABLE providers (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    kind        TEXT NOT NULL,
    base_url    TEXT,
    api_key_enc TEXT,
    config      TEXT NOT NULL DEFAULT '{}',
    enabled     BIGINT NOT NULL DEFAULT 1,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE models (
    id                      BIGSERIAL PRIMARY KEY,
    name                    TEXT NOT NULL UNIQUE,
    provider_id             BIGINT NOT NULL REFERENCES providers(id),
    upstream_model          TEXT NOT NULL,
    input_price_nano        BIGINT NOT NULL,
    output_price_nano       BIGINT NOT NULL,
    cache_read_price_nano   BIGINT,
    cache_write_price_nano  BIGINT,
    max_output_tokens       BIGINT NOT NULL DEFAULT 4096,
    complexity_tier         TEXT NOT NULL DEFAULT 'standard',
    enabled                 BIGINT NOT NULL DEFAULT 1,
    created_at              BIGINT NOT NULL,
    updated_at              BIGINT NOT NULL
);

CREATE TABLE aliases (
    id              BIGSERIAL PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    description     TEXT NOT NULL DEFAULT '',
    complexity_tier TEXT NOT NULL DEFAULT 'standard',
    enabled         BIGINT NOT NULL DEFAULT 1,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);

CREATE TABLE alias_targets (
    id          BIGSERIAL PRIMARY KEY,
    alias_id    BIGINT NOT NULL REFERENCES aliases(id) ON DELETE CASCADE,
    model_id    BIGINT NOT NULL REFERENCES models(id),
    priority    BIGINT NOT NULL DEFAULT 0,
    weight      BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX alias_targets_alias ON alias_targets(alias_id);

CREATE TABLE request_logs (
    id              BIGSERIAL PRIMARY KEY,
    request_id      TEXT NOT NULL,
    user_id         BIGINT NOT NULL,
    key_id          BIGINT NOT NULL,
    endpoint        TEXT NOT NULL,
    model           TEXT NOT NULL,
    served_model    TEXT,
    provider        TEXT,
    stream          BIGINT NOT NULL DEFAULT 0,
    status          BIGINT NOT NULL,
    error_type      TEXT,
    error_message   TEXT,
    tokens_in       BIGINT NOT NULL DEFAULT 0,
    tokens_out      BIGINT NOT NULL DEFAULT 0,
    cached_tokens   BIGINT NOT NULL DEFAULT 0,
    cost_nano       BIGINT NOT NULL DEFAULT 0,
    latency_ms      BIGINT NOT NULL DEFAULT 0,
    ttfb_ms         BIGINT,
    attempts        BIGINT NOT NULL DEFAULT 1,
    attempts_json   TEXT,
    created_at      BIGINT NOT NULL
);
CREATE INDEX request_logs_user_time ON request_logs(user_id, created_at);
CREATE INDEX request_logs_key_time ON request_logs(key_id, created_at);
