//! Time-based one-time passwords (RFC 6238: SHA-1, 6 digits, 30 s) and the enrolment QR code,
//! drawn as SVG on the server so that no script or external service sees the secret.
//!
//! Checking a code yields its time step rather than yes or no: the account remembers the last
//! step it accepted and takes each step once (RFC 6238, section 5.2), so a code seen over a
//! shoulder or replayed by a phishing proxy is worthless once used.

use qrcode::render::svg;
use qrcode::QrCode;
use rand::RngCore;
use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, Secret, TOTP};

use crate::error::AppError;

pub const ISSUER: &str = "Patient portal";
const STEP_SECS: u64 = 30;

fn totp(secret_base32: &str, account: &str) -> Result<TOTP, AppError> {
    let bytes = Secret::Encoded(secret_base32.to_string())
        .to_bytes()
        .map_err(|_| AppError::internal(anyhow::anyhow!("stored TOTP secret is not base32")))?;
    TOTP::new(
        Algorithm::SHA1,
        6,
        1,
        STEP_SECS,
        bytes,
        Some(ISSUER.into()),
        account.into(),
    )
    .map_err(AppError::internal)
}

pub fn new_secret() -> String {
    let mut bytes = [0u8; 20];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    Secret::Raw(bytes.to_vec()).to_encoded().to_string()
}

/// The time step of `code` if it is the code of the step at `unix_time` or of the one before or
/// after it (clock drift); the caller still has to check that the step was not used before.
pub fn matching_step(
    secret_base32: &str,
    account: &str,
    code: &str,
    unix_time: u64,
) -> Result<Option<i64>, AppError> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != 6 || !code.chars().all(|c| c.is_ascii_digit()) {
        return Ok(None);
    }
    let totp = totp(secret_base32, account)?;
    let now = unix_time / STEP_SECS;
    let mut found = None;
    // Every candidate is compared, in constant time, so timing tells nothing about which matched.
    for step in [now.saturating_sub(1), now, now + 1] {
        let expected = totp.generate(step * STEP_SECS);
        if bool::from(expected.as_bytes().ct_eq(code.as_bytes())) {
            found = i64::try_from(step).ok();
        }
    }
    Ok(found)
}

/// The step of `code` at the present time.
pub fn current_step(
    secret_base32: &str,
    account: &str,
    code: &str,
) -> Result<Option<i64>, AppError> {
    matching_step(secret_base32, account, code, unix_now())
}

pub fn unix_now() -> u64 {
    u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0)
}

/// The code of time step `step` (what an authenticator app shows during that step).
pub fn code_of_step(secret_base32: &str, account: &str, step: u64) -> Result<String, AppError> {
    Ok(totp(secret_base32, account)?.generate(step * STEP_SECS))
}

pub fn current_code(secret_base32: &str, account: &str) -> Result<String, AppError> {
    code_of_step(secret_base32, account, unix_now() / STEP_SECS)
}

pub fn otpauth_url(secret_base32: &str, account: &str) -> Result<String, AppError> {
    Ok(totp(secret_base32, account)?.get_url())
}

/// The enrolment QR code as an SVG element (contains only squares: no text from the user).
pub fn qr_svg(secret_base32: &str, account: &str) -> Result<String, AppError> {
    let url = otpauth_url(secret_base32, account)?;
    let code = QrCode::new(url.as_bytes()).map_err(AppError::internal)?;
    Ok(code
        .render::<svg::Color>()
        .min_dimensions(220, 220)
        .quiet_zone(true)
        .build())
}

pub fn recovery_codes() -> Vec<String> {
    (0..8)
        .map(|_| {
            let mut bytes = [0u8; 5];
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            let hex = hex::encode(bytes);
            format!("{}-{}", &hex[..5], &hex[5..])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_names_its_step_within_one_step_of_drift() {
        let secret = new_secret();
        let at = 1_800_000_015;
        let step = at / STEP_SECS;
        for s in [step - 1, step, step + 1] {
            let code = code_of_step(&secret, "x", s).unwrap();
            assert_eq!(
                matching_step(&secret, "x", &code, at).unwrap(),
                Some(s as i64)
            );
        }
        let far = code_of_step(&secret, "x", step + 2).unwrap();
        let near: Vec<String> = [step - 1, step, step + 1]
            .iter()
            .map(|s| code_of_step(&secret, "x", *s).unwrap())
            .collect();
        if !near.contains(&far) {
            assert_eq!(matching_step(&secret, "x", &far, at).unwrap(), None);
        }
        assert_eq!(matching_step(&secret, "x", "12345", at).unwrap(), None);
    }
}
