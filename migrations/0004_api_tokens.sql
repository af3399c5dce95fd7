-- Callers authenticate with bearer tokens; only a hash of each token is kept.

CREATE TABLE api_tokens (
    id          bigserial PRIMARY KEY,
    -- Recorded as the caller of everything done with the token.
    name        text NOT NULL,
    -- SHA-256 of the token. Tokens are 256 random bits, so a slow password hash
    -- would add nothing but latency to every request.
    token_hash  text NOT NULL UNIQUE,
    -- The destination owners the token may use; empty means any.
    owners      text[] NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

-- One active token per name; a revoked name can be issued again.
CREATE UNIQUE INDEX api_tokens_active_name ON api_tokens (name) WHERE revoked_at IS NULL;
