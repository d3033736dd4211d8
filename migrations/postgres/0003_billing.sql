-- Payments (postgres): checkout sessions created for top-ups, and the webhook events already
-- processed. A payment credits the ledger once: the row moves to 'paid' in the same
-- transaction as its ledger entry, and each event id is recorded once.
-- Keep in step with migrations/sqlite/0003_billing.sql.

CREATE TABLE payments (
    id              BIGSERIAL PRIMARY KEY,
    user_id         BIGINT NOT NULL REFERENCES users(id),
    provider        TEXT NOT NULL,
    session_id      TEXT NOT NULL,
    amount_nano     BIGINT NOT NULL,
    currency        TEXT NOT NULL DEFAULT 'usd',
    -- pending | paid | failed | expired
    status          TEXT NOT NULL DEFAULT 'pending',
    checkout_url    TEXT,
    expires_at      BIGINT,
    ledger_entry_id BIGINT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    paid_at         BIGINT,
    UNIQUE (provider, session_id)
);
CREATE INDEX payments_user ON payments(user_id, created_at);

CREATE TABLE webhook_events (
    provider    TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (provider, event_id)
);

-- Ledger entries by kind and time, for statements.
CREATE INDEX ledger_time ON ledger_entries(created_at);
-- Request-log filters of the export (model/status within a user's time range use the
-- existing (user_id, created_at) index).
CREATE INDEX request_logs_request_id ON request_logs(request_id);
CREATE INDEX request_logs_user_id ON request_logs(user_id, id);
