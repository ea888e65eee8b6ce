-- Second factor, sessions and sign-in with an administrator's password (security review, issue 11).

-- The last TOTP time step accepted for the user: a code is accepted once (RFC 6238, 5.2).
ALTER TABLE users ADD COLUMN totp_last_step INTEGER;
-- Sessions carry the epoch they were signed in under; raising it ends every other session.
ALTER TABLE users ADD COLUMN session_epoch INTEGER NOT NULL DEFAULT 0;
-- The administrator who issued the current one-time password (NULL once the user chose their own).
ALTER TABLE users ADD COLUMN password_issued_by TEXT REFERENCES users(id);
-- Until when the citizen has acknowledged sign-ins made with an administrator's password.
ALTER TABLE users ADD COLUMN issued_sign_ins_seen_at TEXT;

-- Keys the server generates once and every instance shares (the sign-in form's CSRF key).
CREATE TABLE server_keys (
    name    TEXT PRIMARY KEY,
    secret  TEXT NOT NULL
);
