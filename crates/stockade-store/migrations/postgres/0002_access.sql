-- Access: users, recovery codes, sessions, API keys, bans.
-- Times are Unix milliseconds (*_ms) or seconds (bans, which follow Fail2Ban's units).
-- No password, TOTP secret, recovery code, session id or API key is stored in clear:
-- passwords are argon2id PHC strings, TOTP secrets are vault ciphertexts, the rest are
-- keyed or plain SHA-256 hashes of 256-bit random values.

CREATE TABLE users (
    id                  TEXT    PRIMARY KEY,
    email               TEXT    NOT NULL UNIQUE,
    role                TEXT    NOT NULL,
    password_hash       TEXT    NOT NULL,
    disabled            BIGINT  NOT NULL DEFAULT 0,
    totp_secret         BYTEA,
    totp_last_step      BIGINT ,
    mfa_enrolled_at_ms  BIGINT ,
    created_at_ms       BIGINT  NOT NULL,
    updated_at_ms       BIGINT  NOT NULL
);

CREATE TABLE recovery_codes (
    user_id     TEXT    NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    code_hash   TEXT    NOT NULL,
    used_at_ms  BIGINT ,
    PRIMARY KEY (user_id, code_hash)
);

-- stage: 'mfa' (password ok, code pending), 'enroll' (must enroll TOTP), 'active'.
CREATE TABLE sessions (
    id_hash        TEXT    PRIMARY KEY,
    user_id        TEXT    NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    stage          TEXT    NOT NULL,
    csrf           TEXT    NOT NULL,
    pending_totp   BYTEA,
    created_at_ms  BIGINT  NOT NULL,
    last_seen_ms   BIGINT  NOT NULL,
    expires_at_ms  BIGINT  NOT NULL
);
CREATE INDEX sessions_user ON sessions(user_id);

CREATE TABLE api_keys (
    id               TEXT    PRIMARY KEY,
    name             TEXT    NOT NULL UNIQUE,
    role             TEXT    NOT NULL,
    env              TEXT    NOT NULL,
    secret_hash      BYTEA   NOT NULL,
    created_by       TEXT    NOT NULL,
    created_at_ms    BIGINT  NOT NULL,
    expires_at_ms    BIGINT ,
    last_used_at_ms  BIGINT ,
    revoked_at_ms    BIGINT 
);

-- Every ban ever imposed (history feeds growing bans and the recidive rule).
CREATE TABLE bans (
    id          TEXT    PRIMARY KEY,
    ip          TEXT    NOT NULL,
    since_s     BIGINT  NOT NULL,
    until_s     BIGINT ,
    ban_count   BIGINT  NOT NULL,
    recidive    BIGINT  NOT NULL,
    reason      TEXT    NOT NULL,
    lifted_at_s BIGINT 
);
CREATE INDEX bans_ip ON bans(ip);
CREATE INDEX bans_since ON bans(since_s);
