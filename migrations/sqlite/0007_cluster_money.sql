-- Cluster mode (issue 15); see the PostgreSQL twin. SQLite never runs in cluster mode, but
-- keeps the same schema: unique request ids (idempotent usage writes) and versions bumped
-- on every balance or key-spend change.
DROP INDEX request_logs_request_id;
CREATE UNIQUE INDEX request_logs_request_id ON request_logs(request_id);

ALTER TABLE users ADD COLUMN balance_version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE api_keys ADD COLUMN spend_version INTEGER NOT NULL DEFAULT 0;

CREATE TRIGGER users_balance_version AFTER UPDATE OF balance_nano ON users
BEGIN
    UPDATE users SET balance_version = balance_version + 1 WHERE id = NEW.id;
END;
CREATE TRIGGER api_keys_spend_version AFTER UPDATE OF spent_nano ON api_keys
BEGIN
    UPDATE api_keys SET spend_version = spend_version + 1 WHERE id = NEW.id;
END;
