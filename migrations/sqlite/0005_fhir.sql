-- FHIR: Observation category (laboratory, vital-signs, ...) for search, and API tokens.
ALTER TABLE lab_results ADD COLUMN category TEXT NOT NULL DEFAULT 'laboratory';

-- Bearer tokens for apps and source systems. Only a SHA-256 of the token is stored: the token
-- is 256 random bits, so a fast hash is enough and lookup by hash is exact.
CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    scopes      TEXT NOT NULL,
    user_id     TEXT REFERENCES users(id),
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
);
