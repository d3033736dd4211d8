-- Sign-in and client authorization (postgres): portal sessions, device-flow grants, refresh
-- tokens, and sign-in throttling. Times are unix milliseconds.

-- Bumped by "sign out everywhere": access tokens minted under an older epoch stop working.
ALTER TABLE users ADD COLUMN auth_epoch BIGINT NOT NULL DEFAULT 0;

CREATE TABLE sessions (
    id          TEXT PRIMARY KEY,
    user_id     BIGINT,
    data        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions(user_id);
CREATE INDEX sessions_expiry ON sessions(expires_at);

CREATE TABLE device_grants (
    id              BIGSERIAL PRIMARY KEY,
    device_code_hash TEXT NOT NULL UNIQUE,
    user_code       TEXT NOT NULL UNIQUE,
    client_id       TEXT NOT NULL,
    scope           TEXT NOT NULL,
    resource        TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending',
    user_id         BIGINT REFERENCES users(id),
    interval_secs   BIGINT NOT NULL,
    last_poll_at    BIGINT,
    expires_at      BIGINT NOT NULL,
    created_at      BIGINT NOT NULL
);

CREATE TABLE refresh_tokens (
    id          BIGSERIAL PRIMARY KEY,
    token_hash  TEXT NOT NULL UNIQUE,
    family      TEXT NOT NULL,
    user_id     BIGINT NOT NULL REFERENCES users(id),
    client_id   TEXT NOT NULL,
    scope       TEXT NOT NULL,
    resource    TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'active',
    expires_at  BIGINT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX refresh_tokens_family ON refresh_tokens(family);
CREATE INDEX refresh_tokens_user ON refresh_tokens(user_id);

CREATE TABLE signin_failures (
    id          BIGSERIAL PRIMARY KEY,
    subject     TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX signin_failures_subject ON signin_failures(subject, created_at);
