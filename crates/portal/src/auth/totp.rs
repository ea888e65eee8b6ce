//! Time-based one-time passwords (RFC 6238: SHA-1, 6 digits, 30 s) and the enrolment QR code,
//! drawn as SVG on the server so that no script or external service sees the secret.

use qrcode::render::svg;
use qrcode::QrCode;
use rand::RngCore;
use totp_rs::{Algorithm, Secret, TOTP};

use crate::error::AppError;

pub const ISSUER: &str = "Patient portal";

fn totp(secret_base32: &str, account: &str) -> Result<TOTP, AppError> {
    let bytes = Secret::Encoded(secret_base32.to_string())
        .to_bytes()
        .map_err(|_| AppError::internal("stored TOTP secret is not base32"))?;
    TOTP::new(
        Algorithm::SHA1,
        6,
        1,
        30,
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

/// Accepts the current code and the one before or after it (clock drift).
pub fn check(secret_base32: &str, account: &str, code: &str) -> Result<bool, AppError> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != 6 || !code.chars().all(|c| c.is_ascii_digit()) {
        return Ok(false);
    }
    totp(secret_base32, account)?
        .check_current(&code)
        .map_err(AppError::internal)
}

pub fn current_code(secret_base32: &str, account: &str) -> Result<String, AppError> {
    totp(secret_base32, account)?
        .generate_current()
        .map_err(AppError::internal)
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
