-- Email verification (sqlite): when an account's email address was proven (a link mailed
-- at sign-up, an operator creating the account, or an identity provider vouching for an
-- account it created), and the outstanding verification links, stored only as keyed
-- hashes. OpenID Connect links an identity by email only to a verified account.
-- Existing administrators were created by an operator: verified. Everyone else starts
-- unverified (the safe side: they can still link by signing in first).
-- Keep in step with migrations/postgres/0005_email_verification.sql.

ALTER TABLE users ADD COLUMN email_verified_at INTEGER;
UPDATE users SET email_verified_at = created_at WHERE role = 'admin';

CREATE TABLE email_verifications (
    token_hash  TEXT PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users(id),
    email_lower TEXT NOT NULL,
    expires_at  INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX email_verifications_user ON email_verifications(user_id);
