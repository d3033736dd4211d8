-- Cluster control plane (sqlite): the instance registry and database-assigned change
-- numbers. Keep in step with migrations/postgres/0006_cluster_control.sql. SQLite serves
-- one instance; the registry lets a second one on the same file be refused, and change
-- numbers drive the same incremental refresh as on PostgreSQL (without NOTIFY).

CREATE TABLE instances (
    id              TEXT PRIMARY KEY,
    version         TEXT NOT NULL,
    listen          TEXT NOT NULL,
    public_url      TEXT NOT NULL,
    cluster         INTEGER NOT NULL DEFAULT 0,
    started_at      INTEGER NOT NULL,
    last_seen_at    INTEGER NOT NULL
);

-- The change counter (SQLite writes are serialized, so numbers appear in commit order).
CREATE TABLE change_state (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    version         INTEGER NOT NULL,
    catalog_version INTEGER NOT NULL
);
INSERT INTO change_state (id, version, catalog_version) VALUES (1, 0, 0);

ALTER TABLE api_keys ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
CREATE INDEX api_keys_version ON api_keys(version);
CREATE INDEX users_version ON users(version);

-- Keys: every column the gateway's key table uses; not spent_nano or last_used_at.
CREATE TRIGGER api_keys_version_insert AFTER INSERT ON api_keys
BEGIN
    UPDATE change_state SET version = version + 1 WHERE id = 1;
    UPDATE api_keys SET version = (SELECT version FROM change_state WHERE id = 1) WHERE id = NEW.id;
END;
CREATE TRIGGER api_keys_version_update AFTER UPDATE OF user_id, name, key_prefix, key_hash, status, group_id, allowed_models, spend_limit_nano, rpm, tpm, expires_at
    ON api_keys
BEGIN
    UPDATE change_state SET version = version + 1 WHERE id = 1;
    UPDATE api_keys SET version = (SELECT version FROM change_state WHERE id = 1) WHERE id = NEW.id;
END;

-- Accounts: status, role and the sign-out epoch; not the balance.
CREATE TRIGGER users_version_insert AFTER INSERT ON users
BEGIN
    UPDATE change_state SET version = version + 1 WHERE id = 1;
    UPDATE users SET version = (SELECT version FROM change_state WHERE id = 1) WHERE id = NEW.id;
END;
CREATE TRIGGER users_version_update AFTER UPDATE OF status, role, auth_epoch
    ON users
BEGIN
    UPDATE change_state SET version = version + 1 WHERE id = 1;
    UPDATE users SET version = (SELECT version FROM change_state WHERE id = 1) WHERE id = NEW.id;
END;

-- The catalog: any row inserted, changed or deleted.
CREATE TRIGGER providers_changed_insert AFTER INSERT ON providers
BEGIN
    UPDATE change_state SET version = version + 1, catalog_version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER providers_changed_update AFTER UPDATE ON providers
BEGIN
    UPDATE change_state SET version = version + 1, catalog_version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER providers_changed_delete AFTER DELETE ON providers
BEGIN
    UPDATE change_state SET version = version + 1, catalog_version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER models_changed_insert AFTER INSERT ON models
BEGIN
    UPDATE change_state SET version = version + 1, catalog_version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER models_changed_update AFTER UPDATE ON models
BEGIN
    UPDATE change_state SET version = version + 1, catalog_version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER models_changed_delete AFTER DELETE ON models
BEGIN
    UPDATE change_state SET version = version + 1, catalog_version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER aliases_changed_insert AFTER INSERT ON aliases
BEGIN
    UPDATE change_state SET version = version + 1, catalog_version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER aliases_changed_update AFTER UPDATE ON aliases
BEGIN
    UPDATE change_state SET version = version + 1, catalog_version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER aliases_changed_delete AFTER DELETE ON aliases
BEGIN
    UPDATE change_state SET version = version + 1, catalog_version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER alias_targets_changed_insert AFTER INSERT ON alias_targets
BEGIN
    UPDATE change_state SET version = version + 1, catalog_version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER alias_targets_changed_update AFTER UPDATE ON alias_targets
BEGIN
    UPDATE change_state SET version = version + 1, catalog_version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER alias_targets_changed_delete AFTER DELETE ON alias_targets
BEGIN
    UPDATE change_state SET version = version + 1, catalog_version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER key_groups_changed_insert AFTER INSERT ON key_groups
BEGIN
    UPDATE change_state SET version = version + 1, catalog_version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER key_groups_changed_update AFTER UPDATE ON key_groups
BEGIN
    UPDATE change_state SET version = version + 1, catalog_version = version + 1 WHERE id = 1;
END;
CREATE TRIGGER key_groups_changed_delete AFTER DELETE ON key_groups
BEGIN
    UPDATE change_state SET version = version + 1, catalog_version = version + 1 WHERE id = 1;
END;
