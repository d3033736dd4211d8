-- Cluster control plane (postgres): the instance registry and database-assigned change
-- numbers. Keep in step with migrations/sqlite/0006_cluster_control.sql.

-- Every running server: registered at start, a heartbeat every second, removed on a
-- graceful shutdown. Times are unix milliseconds read from the database's clock, never an
-- instance's. `cluster` is 1 when the instance runs with Redis (cluster mode).
CREATE TABLE instances (
    id              TEXT PRIMARY KEY,
    version         TEXT NOT NULL,
    listen          TEXT NOT NULL,
    public_url      TEXT NOT NULL,
    cluster         BIGINT NOT NULL DEFAULT 0,
    started_at      BIGINT NOT NULL,
    last_seen_at    BIGINT NOT NULL
);

-- The change counter: every change to what instances cache (keys, account status and
-- sign-out epoch, the catalog) takes the next number in the transaction that makes it.
-- Taking it locks this one row until commit, so numbers become visible in commit order:
-- an instance that has seen number N has seen every change numbered up to N.
CREATE TABLE change_state (
    id              BIGINT PRIMARY KEY CHECK (id = 1),
    version         BIGINT NOT NULL,
    catalog_version BIGINT NOT NULL
);
INSERT INTO change_state (id, version, catalog_version) VALUES (1, 0, 0);

ALTER TABLE api_keys ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
CREATE INDEX api_keys_version ON api_keys(version);
CREATE INDEX users_version ON users(version);

-- The next change number; instances LISTEN on tokengate_changes (delivered at commit).
CREATE FUNCTION tokengate_next_change() RETURNS BIGINT LANGUAGE plpgsql AS $$
DECLARE v BIGINT;
BEGIN
    UPDATE change_state SET version = version + 1 WHERE id = 1 RETURNING version INTO v;
    PERFORM pg_notify('tokengate_changes', v::text);
    RETURN v;
END $$;

CREATE FUNCTION tokengate_version_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.version := tokengate_next_change();
    RETURN NEW;
END $$;

CREATE FUNCTION tokengate_catalog_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE v BIGINT;
BEGIN
    v := tokengate_next_change();
    UPDATE change_state SET catalog_version = v WHERE id = 1;
    RETURN NULL;
END $$;

-- Keys: every column the gateway's key table uses; not spent_nano or last_used_at, which
-- every usage flush writes.
CREATE TRIGGER api_keys_version BEFORE INSERT OR UPDATE OF user_id, name, key_prefix,
    key_hash, status, group_id, allowed_models, spend_limit_nano, rpm, tpm, expires_at
    ON api_keys FOR EACH ROW EXECUTE FUNCTION tokengate_version_row();

-- Accounts: status (suspension), role and the sign-out epoch; not the balance, which every
-- usage flush writes.
CREATE TRIGGER users_version BEFORE INSERT OR UPDATE OF status, role, auth_epoch
    ON users FOR EACH ROW EXECUTE FUNCTION tokengate_version_row();

CREATE TRIGGER providers_changed AFTER INSERT OR UPDATE OR DELETE ON providers
    FOR EACH STATEMENT EXECUTE FUNCTION tokengate_catalog_changed();
CREATE TRIGGER models_changed AFTER INSERT OR UPDATE OR DELETE ON models
    FOR EACH STATEMENT EXECUTE FUNCTION tokengate_catalog_changed();
CREATE TRIGGER aliases_changed AFTER INSERT OR UPDATE OR DELETE ON aliases
    FOR EACH STATEMENT EXECUTE FUNCTION tokengate_catalog_changed();
CREATE TRIGGER alias_targets_changed AFTER INSERT OR UPDATE OR DELETE ON alias_targets
    FOR EACH STATEMENT EXECUTE FUNCTION tokengate_catalog_changed();
CREATE TRIGGER key_groups_changed AFTER INSERT OR UPDATE OR DELETE ON key_groups
    FOR EACH STATEMENT EXECUTE FUNCTION tokengate_catalog_changed();
