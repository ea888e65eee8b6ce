-- Short-lived access tokens of the SMART client-credentials grant (POST /oauth/token) live
-- beside the operator's long-lived tokens; they stop working at expires_at and are deleted
-- as new ones are issued.
ALTER TABLE api_tokens ADD COLUMN expires_at TEXT;
CREATE INDEX api_tokens_by_expiry ON api_tokens (expires_at) WHERE expires_at IS NOT NULL;
