-- Stored Responses API answers (sqlite; keep in step with the other database's
-- 0008_responses.sql). One row per response created with `store` (the default): who owns
-- it (account and key), which provider served it and the id that provider gave it (native
-- Responses upstreams), the turn's input items and output items (JSON arrays, so a
-- `previous_response_id` chain can be rebuilt as history), and the whole Response object
-- for `GET /v1/responses/{id}`. Purged after `responses_retention_days`.

CREATE TABLE responses (
    id                    TEXT PRIMARY KEY,
    user_id               INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    key_id                INTEGER NOT NULL,
    provider              TEXT NOT NULL,
    upstream_id           TEXT,
    model                 TEXT NOT NULL,
    previous_response_id  TEXT,
    input_items           TEXT NOT NULL,
    output_items          TEXT NOT NULL,
    response              TEXT NOT NULL,
    created_at            INTEGER NOT NULL
);
CREATE INDEX responses_user ON responses(user_id);
CREATE INDEX responses_created_at ON responses(created_at);
