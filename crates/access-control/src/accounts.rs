//! Portal users, their credentials and the per-account lock-out. Password hashing is argon2id
//! with OWASP's minimum parameters; callers run it off the async runtime (it takes ~50 ms and
//! 19 MiB on purpose).

use std::sync::OnceLock;

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::{Algorithm, Argon2, Params, Version};
use records_domain::db::{Flag, Statement, Utc, UuidText};
use records_domain::model::PatientId;
use records_domain::DomainError;
use sha2::{Digest, Sha256};
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

/// The columns `UserRow` reads, in a macro so that statements can `concat!` them.
macro_rules! user_columns {
    () => {
        "id, username, display_name, role, patient_id, clinic_id, password_hash, totp_secret, \
         failed_logins, locked_until, disabled, must_change_password, session_epoch, \
         password_issued_by, issued_sign_ins_seen_at"
    };
}

/// `locked_until` is text in fixed-width UTC, so comparing text compares times.
macro_rules! not_locked {
    () => {
        "(locked_until IS NULL OR locked_until <= $2)"
    };
}

const USERNAME_TAKEN: &str = "SELECT id FROM users WHERE username = $1";
const PATIENT_HAS_ACCOUNT: &str = "SELECT id FROM users WHERE patient_id = $1";
const INSERT: &str = "INSERT INTO users (id, username, display_name, password_hash, role, \
     patient_id, clinic_id, totp_secret, must_change_password, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
const BY_USERNAME: &str = concat!(
    "SELECT ",
    user_columns!(),
    " FROM users WHERE username = $1"
);
const BY_ID: &str = concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1");
const FOR_PATIENT: &str = concat!(
    "SELECT ",
    user_columns!(),
    " FROM users WHERE patient_id = $1 AND role = 'patient'"
);
const ALL: &str = concat!(
    "SELECT ",
    user_columns!(),
    " FROM users ORDER BY role, display_name"
);
const CLINICIANS: &str = concat!(
    "SELECT ",
    user_columns!(),
    " FROM users WHERE role = 'clinician' AND disabled = 0 ORDER BY display_name"
);
const COUNT_FAILURE: &str = concat!(
    "UPDATE users SET failed_logins = failed_logins + 1 WHERE id = $1 AND ",
    not_locked!(),
    " RETURNING failed_logins"
);
const LOCK: &str = "UPDATE users SET locked_until = $1 WHERE id = $2";
const CLEAR_FAILURES: &str = concat!(
    "UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = $1 AND ",
    not_locked!()
);
const ACCEPT_TOTP_STEP: &str = concat!(
    "UPDATE users SET totp_last_step = $3, failed_logins = 0, locked_until = NULL \
     WHERE id = $1 AND ",
    not_locked!(),
    " AND (totp_last_step IS NULL OR totp_last_step < $3)"
);
const SET_PASSWORD: &str = "UPDATE users SET password_hash = $1, must_change_password = $2, \
     password_issued_by = $3, failed_logins = 0, locked_until = NULL, \
     session_epoch = session_epoch + 1 WHERE id = $4 RETURNING session_epoch";
const SET_PASSWORD_ISSUER: &str = "UPDATE users SET password_issued_by = $1 WHERE id = $2";
const ENROL_TOTP: &str = "UPDATE users SET totp_secret = $2, totp_last_step = $3, \
     session_epoch = session_epoch + 1 \
     WHERE id = $1 AND (totp_secret IS NULL OR ($4 = 0 AND (totp_secret <> $2 \
     OR totp_last_step IS NULL OR totp_last_step < $3))) RETURNING session_epoch";
const SET_DISABLED: &str =
    "UPDATE users SET disabled = $1, session_epoch = session_epoch + 1 WHERE id = $2";
const ACKNOWLEDGE_ISSUED_SIGN_INS: &str =
    "UPDATE users SET issued_sign_ins_seen_at = $1 WHERE id = $2";
const OFFER_SERVER_KEY: &str =
    "INSERT INTO server_keys (name, secret) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING";
const SERVER_KEY: &str = "SELECT secret FROM server_keys WHERE name = $1";
const DELETE_RECOVERY_CODES: &str = "DELETE FROM recovery_codes WHERE user_id = $1";
const INSERT_RECOVERY_CODE: &str =
    "INSERT INTO recovery_codes (user_id, code_hash) VALUES ($1, $2)";
const USE_RECOVERY_CODE: &str = "UPDATE recovery_codes SET used_at = $1 \
     WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL";

pub(crate) fn statements() -> Vec<Statement> {
    records_domain::statements!("accounts": USERNAME_TAKEN, PATIENT_HAS_ACCOUNT, INSERT,
        BY_USERNAME, BY_ID, FOR_PATIENT, ALL, CLINICIANS, COUNT_FAILURE, LOCK, CLEAR_FAILURES,
        ACCEPT_TOTP_STEP, SET_PASSWORD, SET_PASSWORD_ISSUER, ENROL_TOTP, SET_DISABLED,
        ACKNOWLEDGE_ISSUED_SIGN_INS, OFFER_SERVER_KEY, SERVER_KEY, DELETE_RECOVERY_CODES,
        INSERT_RECOVERY_CODE, USE_RECOVERY_CODE)
}

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
    let taken = sqlx::query(USERNAME_TAKEN)
        .bind(new.username.trim())
        .fetch_optional(&mut *conn)
        .await?;
    if taken.is_some() {
        return Err(DomainError::duplicate("That user name is taken.").into());
    }
    if let Some(patient) = new.patient_id {
        let has_account = sqlx::query(PATIENT_HAS_ACCOUNT)
            .bind(patient)
            .fetch_optional(&mut *conn)
            .await?;
        if has_account.is_some() {
            return Err(DomainError::duplicate(
                "That citizen already has a portal account; reset its password instead.",
            )
            .into());
        }
    }
    sqlx::query(INSERT)
        .bind(UuidText(id))
        .bind(new.username.trim())
        .bind(new.display_name.trim())
        .bind(password_hash)
        .bind(new.role)
        .bind(new.patient_id)
        .bind(new.clinic_id.map(UuidText))
        .bind(new.totp_secret.as_deref())
        .bind(Flag(new.must_change_password))
        .bind(Utc::now())
        .execute(conn)
        .await?;
    Ok(id)
}

pub async fn by_username(
    conn: &mut AnyConnection,
    username: &str,
) -> Result<Option<User>, AccessError> {
    let row: Option<UserRow> = sqlx::query_as(BY_USERNAME)
        .bind(username.trim())
        .fetch_optional(conn)
        .await?;
    Ok(row.map(User::from))
}

pub async fn by_id(conn: &mut AnyConnection, id: Uuid) -> Result<Option<User>, AccessError> {
    let row: Option<UserRow> = sqlx::query_as(BY_ID)
        .bind(UuidText(id))
        .fetch_optional(conn)
        .await?;
    Ok(row.map(User::from))
}

pub async fn for_patient(
    conn: &mut AnyConnection,
    patient: PatientId,
) -> Result<Option<User>, AccessError> {
    let row: Option<UserRow> = sqlx::query_as(FOR_PATIENT)
        .bind(patient)
        .fetch_optional(conn)
        .await?;
    Ok(row.map(User::from))
}

pub async fn all(conn: &mut AnyConnection) -> Result<Vec<User>, AccessError> {
    users(conn, ALL).await
}

pub async fn clinicians(conn: &mut AnyConnection) -> Result<Vec<User>, AccessError> {
    users(conn, CLINICIANS).await
}

async fn users(conn: &mut AnyConnection, sql: &'static str) -> Result<Vec<User>, AccessError> {
    let rows: Vec<UserRow> = sqlx::query_as(sql).fetch_all(conn).await?;
    Ok(rows.into_iter().map(User::from).collect())
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
    let failures: Option<i64> = sqlx::query_scalar(COUNT_FAILURE)
        .bind(UuidText(id))
        .bind(Utc(now))
        .fetch_optional(&mut *conn)
        .await?;
    let Some(failures) = failures else {
        return Ok(Failure::AlreadyLocked);
    };
    let locked_until = lock_duration(failures).map(|d| now + d);
    if let Some(until) = locked_until {
        sqlx::query(LOCK)
            .bind(Utc(until))
            .bind(UuidText(id))
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
    let done = sqlx::query(CLEAR_FAILURES)
        .bind(UuidText(id))
        .bind(Utc(now))
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
    let done = sqlx::query(ACCEPT_TOTP_STEP)
        .bind(UuidText(id))
        .bind(Utc(now))
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
        PasswordSetBy::Administrator(admin) => Some(UuidText(admin)),
    };
    let epoch: Option<i64> = sqlx::query_scalar(SET_PASSWORD)
        .bind(hash)
        .bind(Flag(issued_by.is_some()))
        .bind(issued_by)
        .bind(UuidText(id))
        .fetch_optional(conn)
        .await?;
    epoch.ok_or(AccessError::Domain(DomainError::NotFound))
}

/// Record that an administrator issued the one-time password of a user they just created.
pub async fn set_password_issuer(
    conn: &mut AnyConnection,
    id: Uuid,
    admin: Uuid,
) -> Result<(), AccessError> {
    sqlx::query(SET_PASSWORD_ISSUER)
        .bind(UuidText(admin))
        .bind(UuidText(id))
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
    let epoch = sqlx::query_scalar(ENROL_TOTP)
        .bind(UuidText(id))
        .bind(secret)
        .bind(step)
        .bind(Flag(only_if_none))
        .fetch_optional(conn)
        .await?;
    Ok(epoch)
}

/// Disable or enable an account. Either way every session of the user ends: a session must not
/// come back to life when a disabled account is enabled again.
pub async fn set_disabled(
    conn: &mut AnyConnection,
    id: Uuid,
    disabled: bool,
) -> Result<(), AccessError> {
    let done = sqlx::query(SET_DISABLED)
        .bind(Flag(disabled))
        .bind(UuidText(id))
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
    sqlx::query(ACKNOWLEDGE_ISSUED_SIGN_INS)
        .bind(Utc(until))
        .bind(UuidText(id))
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
    sqlx::query(OFFER_SERVER_KEY)
        .bind(name)
        .bind(fresh)
        .execute(&mut *conn)
        .await?;
    let secret = sqlx::query_scalar(SERVER_KEY)
        .bind(name)
        .fetch_one(conn)
        .await?;
    Ok(secret)
}

/// Replace the user's recovery codes; only their hashes are stored.
pub async fn replace_recovery_codes(
    conn: &mut AnyConnection,
    id: Uuid,
    codes: &[String],
) -> Result<(), AccessError> {
    sqlx::query(DELETE_RECOVERY_CODES)
        .bind(UuidText(id))
        .execute(&mut *conn)
        .await?;
    for code in codes {
        sqlx::query(INSERT_RECOVERY_CODE)
            .bind(UuidText(id))
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
    let done = sqlx::query(USE_RECOVERY_CODE)
        .bind(Utc::now())
        .bind(UuidText(id))
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

#[derive(sqlx::FromRow)]
struct UserRow {
    id: UuidText,
    username: String,
    display_name: String,
    role: Role,
    patient_id: Option<PatientId>,
    clinic_id: Option<UuidText>,
    password_hash: String,
    totp_secret: Option<String>,
    failed_logins: i64,
    locked_until: Option<Utc>,
    disabled: Flag,
    must_change_password: Flag,
    session_epoch: i64,
    password_issued_by: Option<UuidText>,
    issued_sign_ins_seen_at: Option<Utc>,
}

impl From<UserRow> for User {
    fn from(row: UserRow) -> Self {
        Self {
            id: row.id.0,
            username: row.username,
            display_name: row.display_name,
            role: row.role,
            patient_id: row.patient_id,
            clinic_id: row.clinic_id.map(Uuid::from),
            password_hash: row.password_hash,
            totp_secret: row.totp_secret,
            failed_logins: row.failed_logins,
            locked_until: row.locked_until.map(OffsetDateTime::from),
            disabled: row.disabled.0,
            must_change_password: row.must_change_password.0,
            session_epoch: row.session_epoch,
            password_issued_by: row.password_issued_by.map(Uuid::from),
            issued_sign_ins_seen_at: row.issued_sign_ins_seen_at.map(OffsetDateTime::from),
        }
    }
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
