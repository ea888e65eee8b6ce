//! The absolute address of the FHIR API as the client reached it. The specification wants
//! absolute URLs in `fullUrl`, paging links and `Location`, and a client library follows them
//! as given; behind a reverse proxy only the operator knows the public address
//! (`PORTAL_PUBLIC_URL`), so the request's own Host is the fallback, not the rule.

use axum::http::{header, HeaderMap};

use super::BASE;
use crate::app::AppState;

/// `https://portal.example.dk`: scheme, host and port, no trailing slash.
pub fn origin(headers: &HeaderMap, state: &AppState) -> String {
    if let Some(public) = &state.config.public_url {
        return public.clone();
    }
    let scheme = if state.config.secure_cookies {
        "https"
    } else {
        "http"
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| is_host(h))
        .map(str::to_string)
        .unwrap_or_else(|| state.config.bind.to_string());
    format!("{scheme}://{host}")
}

/// `https://portal.example.dk/fhir/r4`
pub fn base_url(headers: &HeaderMap, state: &AppState) -> String {
    format!("{}{BASE}", origin(headers, state))
}

/// A Host header that can stand in a URL as it is: a name or address and a port, nothing a
/// client could use to make the portal's links point into a path or another scheme.
fn is_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
}
