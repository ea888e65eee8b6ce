//! Clients as a browser would be: each with its own cookie jar and keep-alive connection,
//! signing in through the real sign-in form (its CSRF token, the password, and for staff the
//! TOTP step), and sending the session's CSRF token with every form.
//!
//! Every client claims its own address in `X-Forwarded-For` (from the IPv6 documentation
//! prefix 2001:db8::/32; the portal runs with `PORTAL_TRUST_PROXY=1`, as behind a load
//! balancer), so that the per-address sign-in throttle sees many citizens, not one machine.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use reqwest::header::{HeaderMap, HeaderValue, LOCATION};
use reqwest::StatusCode;

use crate::population::PASSWORD;

static NEXT_ADDRESS: AtomicU64 = AtomicU64::new(1);

/// A client address nobody else in this run has used.
pub fn fresh_address() -> String {
    let n = NEXT_ADDRESS.fetch_add(1, Ordering::Relaxed);
    format!(
        "2001:db8:{:x}:{:x}::{:x}",
        (n >> 32) & 0xffff,
        (n >> 16) & 0xffff,
        n & 0xffff
    )
}

/// A bare client: one keep-alive connection, no redirects followed (the harness checks them).
pub fn client(cookies: bool, headers: HeaderMap) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .cookie_store(cookies)
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(headers)
        .pool_max_idle_per_host(1)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(60))
        .build()?)
}

/// A user's browser on one connection.
#[derive(Clone)]
pub struct Browser {
    pub client: reqwest::Client,
    pub base: String,
    /// The signed-in session's CSRF token, for forms.
    pub csrf: String,
}

/// The value of the first `<input name="csrf" value="...">` of a page.
pub fn csrf_of(page: &str) -> Option<String> {
    let marker = "name=\"csrf\" value=\"";
    let start = page.find(marker)? + marker.len();
    let end = page[start..].find('"')?;
    Some(page[start..start + end].to_string())
}

fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

impl Browser {
    pub fn new(base: &str) -> anyhow::Result<Self> {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_str(&fresh_address())?);
        Ok(Self {
            client: client(true, headers)?,
            base: base.to_string(),
            csrf: String::new(),
        })
    }

    /// The sign-in form's token (its cookie lands in the jar).
    pub async fn login_form(&self) -> anyhow::Result<String> {
        let page = self
            .client
            .get(format!("{}/login", self.base))
            .send()
            .await?
            .text()
            .await?;
        csrf_of(&page).context("the sign-in page has no CSRF token")
    }

    /// Sign in with the password, and with the current TOTP code when the portal asks for
    /// one; then fetch `form_page` (a page with a form) for the session's CSRF token.
    pub async fn sign_in(
        &mut self,
        username: &str,
        totp: Option<&Totp>,
        form_page: &str,
    ) -> anyhow::Result<()> {
        let token = self.login_form().await?;
        let response = self
            .client
            .post(format!("{}/login", self.base))
            .form(&[
                ("csrf", token.as_str()),
                ("username", username),
                ("password", PASSWORD),
            ])
            .send()
            .await?;
        anyhow::ensure!(
            response.status() == StatusCode::SEE_OTHER,
            "sign-in of {username}: {}",
            response.status()
        );
        if location(&response) == "/login/second-factor" {
            let totp = totp.with_context(|| format!("{username} has no TOTP secret"))?;
            let page = self
                .client
                .get(format!("{}/login/second-factor", self.base))
                .send()
                .await?
                .text()
                .await?;
            let csrf = csrf_of(&page).context("the second-factor page has no CSRF token")?;
            let code = totp.code_for(username).await?;
            let response = self
                .client
                .post(format!("{}/login/second-factor", self.base))
                .form(&[("csrf", csrf.as_str()), ("code", code.as_str())])
                .send()
                .await?;
            anyhow::ensure!(
                response.status() == StatusCode::SEE_OTHER,
                "second factor of {username}: {}",
                response.status()
            );
        }
        let page = self
            .client
            .get(format!("{}{form_page}", self.base))
            .send()
            .await?;
        anyhow::ensure!(
            page.status().is_success(),
            "{form_page} after sign-in of {username}: {}",
            page.status()
        );
        self.csrf = csrf_of(&page.text().await?)
            .with_context(|| format!("{form_page} has no CSRF token"))?;
        Ok(())
    }
}

const STEP_SECS: u64 = 30;

/// TOTP codes for the staff's secrets. The portal takes each time step once per user, so a
/// user who already signed in during the current step waits for the next one.
#[derive(Default)]
pub struct Totp {
    secrets: HashMap<String, String>,
    used: Mutex<HashMap<String, u64>>,
}

impl Totp {
    /// `last_steps`: the step each user last signed in with, as the portal recorded it.
    pub fn new(secrets: HashMap<String, String>, last_steps: HashMap<String, u64>) -> Self {
        Self {
            secrets,
            used: Mutex::new(last_steps),
        }
    }

    pub async fn code_for(&self, username: &str) -> anyhow::Result<String> {
        let secret = self
            .secrets
            .get(username)
            .with_context(|| format!("no TOTP secret for {username}"))?;
        let totp = totp_rs::TOTP::new_unchecked(
            totp_rs::Algorithm::SHA1,
            6,
            1,
            STEP_SECS,
            totp_rs::Secret::Encoded(secret.clone())
                .to_bytes()
                .map_err(|e| anyhow::anyhow!("TOTP secret of {username}: {e:?}"))?,
            None,
            username.to_string(),
        );
        loop {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs();
            let step = now / STEP_SECS;
            let wait = {
                let mut used = self
                    .used
                    .lock()
                    .map_err(|_| anyhow::anyhow!("TOTP bookkeeping poisoned"))?;
                if used.get(username).is_some_and(|s| *s >= step) {
                    Some((step + 1) * STEP_SECS - now)
                } else {
                    used.insert(username.to_string(), step);
                    None
                }
            };
            match wait {
                Some(secs) => tokio::time::sleep(Duration::from_secs(secs.max(1))).await,
                None => return Ok(totp.generate(step * STEP_SECS)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_form_token() {
        let page =
            r#"<form><input type="hidden" name="csrf" value="abc-123_x"><input name="q"></form>"#;
        assert_eq!(csrf_of(page).as_deref(), Some("abc-123_x"));
        assert_eq!(csrf_of("<p>no form</p>"), None);
    }

    #[test]
    fn addresses_do_not_repeat() {
        let a: std::collections::HashSet<String> = (0..70_000).map(|_| fresh_address()).collect();
        assert_eq!(a.len(), 70_000);
        assert!(a.iter().all(|s| s.parse::<std::net::Ipv6Addr>().is_ok()));
    }
}
