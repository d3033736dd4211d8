-- Cluster mode (issue 15). A request id is unique: a settled charge may reach the database
-- twice (the settling instance's own usage log and the shared Redis outbox) and is written
-- once (INSERT … ON CONFLICT DO NOTHING). Balances and key spend carry a version the
-- database bumps on every change, so instances order values by the database, never by
-- their own clocks.
DROP INDEX request_logs_request_id;
CREATE UNIQUE INDEX request_logs_request_id ON request_logs(request_id);

ALTER TABLE users ADD COLUMN balance_version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE api_keys ADD COLUMN spend_version BIGINT NOT NULL DEFAULT 0;

CREATE FUNCTION tokengate_bump_balance_version() RETURNS trigger AS $$
BEGIN
    NEW.balance_version := OLD.balance_version + 1;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

CREATE FUNCTION tokengate_bump_spend_version() RETURNS trigger AS $$
BEGIN
    NEW.spend_version := OLD.spend_version + 1;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER users_balance_version BEFORE UPDATE OF balance_nano ON users
    FOR EACH ROW EXECUTE FUNCTION tokengate_bump_balance_version();
CREATE TRIGGER api_keys_spend_version BEFORE UPDATE OF spent_nano ON api_keys
    FOR EACH ROW EXECUTE FUNCTION tokengate_bump_spend_version();
