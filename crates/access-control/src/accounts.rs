//! Portal users, their credentials and the per-account lock-out. Password hashing is argon2id
//! with OWASP's minimum parameters; callers run it off the async runtime (it takes ~50 ms and
//! 19 MiB on purpose).

use std::sync::OnceLock;

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::{Algorithm, Argon2, Params, Version};
use records_domain::db::{ts, RowExt};
use records_domain::model::PatientId;
use records_domain::DomainError;
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::AnyConnection;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::actor::{Actor, Reach, Role};
use crate::AccessError;

/// Failures before the account starts to lock, and the longest lock.
pub const LOCK_AFTER_FAILURES: i64 = 5;
pub const MAX_LOCK: Duration = Duration::hours(1);
pub const MIN_PASSWORD_LENGTH: usize = 12;
/// The audit action of a sign-in with a one-time password an administrator issued.
pub const ISSUED_SIGN_IN: &str = "sign-in with administrator-issued password";

#[derive(Debug, Clone)]
pub struct User {
    pub id: Uuid,
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub patient_id: Option<PatientId>,
    pub clinic_id: Option<Uuid>,
    pub password_hash: String,
    pub totp_secret: Option<String>,
    pub failed_logins: i64,
    pub locked_until: Option<OffsetDateTime>,
    pub disabled: bool,
    pub must_change_password: bool,
    /// Raised whenever the password, the second factor or the account's standing changes; a
    /// session signed in under an older epoch is over.
    pub session_epoch: i64,
    /// The administrator who issued the current one-time password, until the user sets their own.
    pub password_issued_by: Option<Uuid>,
    /// Sign-ins with an administrator's password up to this time have been acknowledged.
    pub issued_sign_ins_seen_at: Option<OffsetDateTime>,
}

impl User {
    pub fn actor(&self) -> Actor {
        Actor {
            user_id: self.id,
            name: self.display_name.clone(),
            role: self.role,
            patient_id: self.patient_id,
            clinic_id: self.clinic_id,
            reach: Reach::WholeRole,
        }
    }

    pub fn is_locked(&self, now: OffsetDateTime) -> bool {
        self.locked_until.is_some_and(|until| now < until)
    }
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub patient_id: Option<PatientId>,
    pub clinic_id: Option<Uuid>,
    pub totp_secret: Option<String>,
    pub must_change_password: bool,
}

impl NewUser {
    pub fn validate(&self) -> Result<(), AccessError> {
        let name = self.username.trim();
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
        if name.len() < 2 || name.len() > 64 || !name.chars().all(allowed) {
            return Err(AccessError::invalid(
                "User names are 2 to 64 letters, digits, dots, dashes or underscores.",
            ));
        }
        if self.display_name.trim().is_empty() || self.display_name.len() > 200 {
            return Err(AccessError::invalid("Give the user's full name."));
        }
        match (self.role, self.patient_id, self.clinic_id) {
            (Role::Patient, None, _) => Err(AccessError::invalid(
                "A citizen user must be tied to a patient.",
            )),
            (Role::Clinician, _, None) => {
                Err(AccessError::invalid("A clinician must belong to a clinic."))
            }
            (Role::System, _, _) => Err(AccessError::invalid(
                "System clients use API tokens, not user accounts.",
            )),
            _ => Ok(()),
        }
    }
}

pub async fn create(
    conn: &mut AnyConnection,
    new: &NewUser,
    password_hash: &str,
) -> Result<Uuid, AccessError> {
    new.validate()?;
    let id = Uuid::now_v7();
    let taken = sqlx::query("SELECT id FROM users WHERE username = $1")
        .bind(new.username.trim())
        .fetch_optional(&mut *conn)
        .await?;
    if taken.is_some() {
        return Err(DomainError::duplicate("That user name is taken.").into());
    }
    if let Some(patient) = new.patient_id {
        let has_account = sqlx::query("SELECT id FROM users WHERE patient_id = $1")
            .bind(patient.0.to_string())
            .fetch_optional(&mut *conn)
            .await?;
        if has_account.is_some() {
            return Err(DomainError::duplicate(
                "That citizen already has a portal account; reset its password instead.",
            )
            .into());
        }
    }
    sqlx::query(
        "INSERT INTO users (id, username, display_name, password_hash, role, patient_id, clinic_id, totp_secret, \
         must_change_password, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(id.to_string())
    .bind(new.username.trim())
    .bind(new.display_name.trim())
    .bind(password_hash)
    .bind(new.role.as_str())
    .bind(new.patient_id.map(|p| p.0.to_string()))
    .bind(new.clinic_id.map(|c| c.to_string()))
    .bind(new.totp_secret.as_deref())
    .bind(i64::from(new.must_change_password))
    .bind(ts(OffsetDateTime::now_utc()))
    .execute(conn)
    .await?;
    Ok(id)
}

pub async fn by_username(
    conn: &mut AnyConnection,
    username: &str,
) -> Result<Option<User>, AccessError> {
    let row = sqlx::query("SELECT * FROM users WHERE username = $1")
        .bind(username.trim())
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn by_id(conn: &mut AnyConnection, id: Uuid) -> Result<Option<User>, AccessError> {
    let row = sqlx::query("SELECT * FROM users WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn for_patient(
    conn: &mut AnyConnection,
    patient: PatientId,
) -> Result<Option<User>, AccessError> {
    let row = sqlx::query("SELECT * FROM users WHERE patient_id = $1 AND role = 'patient'")
        .bind(patient.0.to_string())
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn all(conn: &mut AnyConnection) -> Result<Vec<User>, AccessError> {
    let rows = sqlx::query("SELECT * FROM users ORDER BY role, display_name")
        .fetch_all(conn)
        .await?;
    rows.iter().map(from_row).collect()
}

pub async fn clinicians(conn: &mut AnyConnection) -> Result<Vec<User>, AccessError> {
    let rows = sqlx::query(
        "SELECT * FROM users WHERE role = 'clinician' AND disabled = 0 ORDER BY display_name",
    )
    .fetch_all(conn)
    .await?;
    rows.iter().map(from_row).collect()
}

/// How long the account stays locked after this many consecutive failures: from the fifth,
/// one minute, doubling each time, at most an hour.
pub fn lock_duration(failures: i64) -> Option<Duration> {
    if failures < LOCK_AFTER_FAILURES {
        return None;
    }
    let exponent = (failures - LOCK_AFTER_FAILURES).min(10) as u32;
    Some((Duration::minutes(1) * 2_i32.pow(exponent)).min(MAX_LOCK))
}

/// What became of a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Counted; the account is now locked until then, if it is.
    Counted {
        locked_until: Option<OffsetDateTime>,
    },
    /// The account was already locked: the attempt was not evaluated and is not counted.
    AlreadyLocked,
}

/// `locked_until` is text in fixed-width UTC, so comparing text compares times.
const NOT_LOCKED: &str = "(locked_until IS NULL OR locked_until <= $2)";

/// Count a failed sign-in attempt, unless the account is already locked.
///
/// Run it in a write transaction: the count is raised and read in one statement and the lock
/// set before the transaction ends, so of any number of concurrent failures at most
/// `LOCK_AFTER_FAILURES` are counted before the lock holds (the next writer waits for the row
/// on PostgreSQL, for the database on SQLite, and then sees the lock).
pub async fn record_failure(
    conn: &mut AnyConnection,
    id: Uuid,
    now: OffsetDateTime,
) -> Result<Failure, AccessError> {
    let row = sqlx::query(&format!(
        "UPDATE users SET failed_logins = failed_logins + 1 WHERE id = $1 AND {NOT_LOCKED} \
         RETURNING failed_logins"
    ))
    .bind(id.to_string())
    .bind(ts(now))
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(Failure::AlreadyLocked);
    };
    let locked_until = lock_duration(row.int("failed_logins")?).map(|d| now + d);
    if let Some(until) = locked_until {
        sqlx::query("UPDATE users SET locked_until = $1 WHERE id = $2")
            .bind(ts(until))
            .bind(id.to_string())
            .execute(conn)
            .await?;
    }
    Ok(Failure::Counted { locked_until })
}

/// A sign-in succeeded: clear the failure count, unless the account is locked by now, in
/// which case nothing changes and the answer is `false` (the sign-in must be refused).
pub async fn record_success(
    conn: &mut AnyConnection,
    id: Uuid,
    now: OffsetDateTime,
) -> Result<bool, AccessError> {
    let done = sqlx::query(&format!(
        "UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = $1 AND {NOT_LOCKED}"
    ))
    .bind(id.to_string())
    .bind(ts(now))
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Accept a TOTP code of time step `step`: only if no code of this or a later step was accepted
/// before (RFC 6238, section 5.2) and the account is not locked; clears the failure count.
/// One conditional UPDATE, so two concurrent sign-ins with the same code cannot both pass.
pub async fn accept_totp_step(
    conn: &mut AnyConnection,
    id: Uuid,
    step: i64,
    now: OffsetDateTime,
) -> Result<bool, AccessError> {
    let done = sqlx::query(&format!(
        "UPDATE users SET totp_last_step = $3, failed_logins = 0, locked_until = NULL \
         WHERE id = $1 AND {NOT_LOCKED} AND (totp_last_step IS NULL OR totp_last_step < $3)"
    ))
    .bind(id.to_string())
    .bind(ts(now))
    .bind(step)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Who set a password: the user themself, or an administrator handing out a one-time password
/// that must be changed at the next sign-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordSetBy {
    User,
    Administrator(Uuid),
}

/// Set the password and end every session of the user; returns the new session epoch, which
/// the caller's own session adopts if it is to go on.
pub async fn set_password(
    conn: &mut AnyConnection,
    id: Uuid,
    hash: &str,
    by: PasswordSetBy,
) -> Result<i64, AccessError> {
    let issued_by = match by {
        PasswordSetBy::User => None,
        PasswordSetBy::Administrator(admin) => Some(admin.to_string()),
    };
    let row = sqlx::query(
        "UPDATE users SET password_hash = $1, must_change_password = $2, password_issued_by = $3, \
         failed_logins = 0, locked_until = NULL, session_epoch = session_epoch + 1 \
         WHERE id = $4 RETURNING session_epoch",
    )
    .bind(hash)
    .bind(i64::from(issued_by.is_some()))
    .bind(issued_by)
    .bind(id.to_string())
    .fetch_optional(conn)
    .await?;
    Ok(row
        .ok_or(AccessError::Domain(DomainError::NotFound))?
        .int("session_epoch")?)
}

/// Record that an administrator issued the one-time password of a user they just created.
pub async fn set_password_issuer(
    conn: &mut AnyConnection,
    id: Uuid,
    admin: Uuid,
) -> Result<(), AccessError> {
    sqlx::query("UPDATE users SET password_issued_by = $1 WHERE id = $2")
        .bind(admin.to_string())
        .bind(id.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

/// Store a newly confirmed TOTP secret with the time step of the code that confirmed it, and
/// end every session of the user; returns the new session epoch. `false` in place of an epoch
/// when the same secret was already confirmed with this or a later step (a replayed
/// confirmation), or when `only_if_none` and the user already has a secret (two enrolments at
/// sign-in racing each other: the first one wins).
pub async fn enrol_totp(
    conn: &mut AnyConnection,
    id: Uuid,
    secret: &str,
    step: i64,
    only_if_none: bool,
) -> Result<Option<i64>, AccessError> {
    let row = sqlx::query(
        "UPDATE users SET totp_secret = $2, totp_last_step = $3, session_epoch = session_epoch + 1 \
         WHERE id = $1 AND (totp_secret IS NULL OR ($4 = 0 AND (totp_secret <> $2 \
         OR totp_last_step IS NULL OR totp_last_step < $3))) RETURNING session_epoch",
    )
    .bind(id.to_string())
    .bind(secret)
    .bind(step)
    .bind(i64::from(only_if_none))
    .fetch_optional(conn)
    .await?;
    row.map(|r| r.int("session_epoch"))
        .transpose()
        .map_err(Into::into)
}

/// Disable or enable an account. Either way every session of the user ends: a session must not
/// come back to life when a disabled account is enabled again.
pub async fn set_disabled(
    conn: &mut AnyConnection,
    id: Uuid,
    disabled: bool,
) -> Result<(), AccessError> {
    let done = sqlx::query(
        "UPDATE users SET disabled = $1, session_epoch = session_epoch + 1 WHERE id = $2",
    )
    .bind(i64::from(disabled))
    .bind(id.to_string())
    .execute(conn)
    .await?;
    if done.rows_affected() == 0 {
        return Err(AccessError::Domain(DomainError::NotFound));
    }
    Ok(())
}

/// The citizen has seen the notice of sign-ins with an administrator's password up to `until`.
pub async fn acknowledge_issued_sign_ins(
    conn: &mut AnyConnection,
    id: Uuid,
    until: OffsetDateTime,
) -> Result<(), AccessError> {
    sqlx::query("UPDATE users SET issued_sign_ins_seen_at = $1 WHERE id = $2")
        .bind(ts(until))
        .bind(id.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

/// A key the server generated once, shared by every instance: the stored one, or `fresh` if
/// none was stored yet (the first instance to start stores its own; the others read it).
pub async fn server_key(
    conn: &mut AnyConnection,
    name: &str,
    fresh: &str,
) -> Result<String, AccessError> {
    sqlx::query(
        "INSERT INTO server_keys (name, secret) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(fresh)
    .execute(&mut *conn)
    .await?;
    let row = sqlx::query("SELECT secret FROM server_keys WHERE name = $1")
        .bind(name)
        .fetch_one(conn)
        .await?;
    Ok(row.text("secret")?)
}

/// Replace the user's recovery codes; only their hashes are stored.
pub async fn replace_recovery_codes(
    conn: &mut AnyConnection,
    id: Uuid,
    codes: &[String],
) -> Result<(), AccessError> {
    sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
        .bind(id.to_string())
        .execute(&mut *conn)
        .await?;
    for code in codes {
        sqlx::query("INSERT INTO recovery_codes (user_id, code_hash) VALUES ($1, $2)")
            .bind(id.to_string())
            .bind(sha256_hex(&normalise_code(code)))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Spend a recovery code; each works once (a conditional UPDATE: of two concurrent uses of
/// the same code, one finds it spent).
pub async fn use_recovery_code(
    conn: &mut AnyConnection,
    id: Uuid,
    code: &str,
) -> Result<bool, AccessError> {
    let done = sqlx::query("UPDATE recovery_codes SET used_at = $1 WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL")
        .bind(ts(OffsetDateTime::now_utc()))
        .bind(id.to_string())
        .bind(sha256_hex(&normalise_code(code)))
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

fn normalise_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_lowercase()
}

pub fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn argon2() -> Result<Argon2<'static>, AccessError> {
    // OWASP password storage cheat sheet: argon2id, m = 19 MiB, t = 2, p = 1.
    let params =
        Params::new(19 * 1024, 2, 1, None).map_err(|e| AccessError::Hashing(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

pub fn hash_password(password: &str) -> Result<String, AccessError> {
    let salt = SaltString::generate(&mut OsRng);
    let hash = argon2()?
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| AccessError::Hashing(e.to_string()))?;
    Ok(hash.to_string())
}

pub fn verify_password(hash: &str, password: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    argon2().is_ok_and(|a| a.verify_password(password.as_bytes(), &parsed).is_ok())
}

/// A real hash of a random password: unknown user names are checked against it so that they
/// take as long as known ones.
pub fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_password(&Uuid::new_v4().to_string()).unwrap_or_default())
}

const COMMON_PASSWORDS: &str = include_str!("common-passwords.txt");

/// Length, and no well-known password or trivial pattern (ASVS 5.0 V6.2).
pub fn check_new_password(password: &str, username: &str) -> Result<(), AccessError> {
    let length = password.chars().count();
    if length < MIN_PASSWORD_LENGTH {
        return Err(AccessError::invalid(format!(
            "Use at least {MIN_PASSWORD_LENGTH} characters."
        )));
    }
    if length > 128 {
        return Err(AccessError::invalid("Use at most 128 characters."));
    }
    let lower = password.to_lowercase();
    let first = lower.chars().next().unwrap_or(' ');
    let common = COMMON_PASSWORDS.lines().any(|l| {
        !l.is_empty()
            && (lower == l
                || lower.starts_with(l)
                    && lower[l.len()..]
                        .chars()
                        .all(|c| c.is_ascii_digit() || c == '!'))
    });
    if common
        || lower.chars().all(|c| c == first)
        || (!username.is_empty() && lower.contains(&username.to_lowercase()))
    {
        return Err(AccessError::invalid(
            "That password is too easy to guess: avoid common passwords and your user name.",
        ));
    }
    Ok(())
}

fn from_row(row: &AnyRow) -> Result<User, AccessError> {
    Ok(User {
        id: row.uuid("id")?,
        username: row.text("username")?,
        display_name: row.text("display_name")?,
        role: Role::parse(&row.text("role")?)
            .ok_or_else(|| AccessError::invalid("unknown role"))?,
        patient_id: row.opt_uuid("patient_id")?.map(PatientId),
        clinic_id: row.opt_uuid("clinic_id")?,
        password_hash: row.text("password_hash")?,
        totp_secret: row.opt_text("totp_secret")?,
        failed_logins: row.int("failed_logins")?,
        locked_until: row.opt_time("locked_until")?,
        disabled: row.int("disabled")? != 0,
        must_change_password: row.int("must_change_password")? != 0,
        session_epoch: row.int("session_epoch")?,
        password_issued_by: row.opt_uuid("password_issued_by")?,
        issued_sign_ins_seen_at: row.opt_time("issued_sign_ins_seen_at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_out_backs_off_from_the_fifth_failure() {
        assert_eq!(lock_duration(4), None);
        assert_eq!(lock_duration(5), Some(Duration::minutes(1)));
        assert_eq!(lock_duration(6), Some(Duration::minutes(2)));
        assert_eq!(lock_duration(8), Some(Duration::minutes(8)));
        assert_eq!(lock_duration(30), Some(MAX_LOCK));
    }

    #[test]
    fn password_policy() {
        assert!(check_new_password("short", "anne").is_err());
        assert!(check_new_password("password1234", "anne").is_err());
        assert!(check_new_password("aaaaaaaaaaaaaa", "anne").is_err());
        assert!(check_new_password("anne-is-my-name", "anne").is_err());
        assert!(check_new_password("qwertyuiop123", "x").is_err());
        assert!(check_new_password("correct horse battery", "anne").is_ok());
    }

    #[test]
    fn hashes_verify_and_reject() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify_password(&hash, "correct horse battery"));
        assert!(!verify_password(&hash, "wrong horse battery"));
        assert!(!verify_password("not a hash", "x"));
    }
}
