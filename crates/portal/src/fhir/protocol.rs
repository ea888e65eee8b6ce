//! What every exchange under `/fhir/r4` obeys, whatever route it reaches: the portal speaks
//! FHIR JSON only, so a client asking for XML is told so (406, 415) before any handler runs,
//! and every error, including axum's own (no such route, a method the route lacks, a body
//! over the limit), reaches the client as an OperationOutcome rather than an HTML page or an
//! empty body. A FHIR client library parses the OperationOutcome; it cannot parse either of
//! those.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{resources, FHIR_JSON};

/// Answers for a path under `/fhir/r4` that no route serves.
pub(super) async fn unknown_route(method: Method) -> Response {
    outcome(
        StatusCode::NOT_FOUND,
        "not-supported",
        &format!(
            "this server has no {method} interaction here; GET /fhir/r4/metadata lists what it has"
        ),
    )
}

pub(super) async fn json_only(request: Request, next: Next) -> Response {
    if let Some(refusal) = refuse_format(request.uri().query(), request.headers()) {
        return refusal;
    }
    let mut response = as_operation_outcome(next.run(request).await).await;
    // Records are for the caller alone, and absolute URLs depend on the Host asked for: no
    // shared cache may keep or reuse an answer.
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::VARY,
        HeaderValue::from_static("Host, Authorization, Accept"),
    );
    response
}

fn outcome(status: StatusCode, code: &str, diagnostics: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, FHIR_JSON)],
        resources::operation_outcome("error", code, diagnostics).to_string(),
    )
        .into_response()
}

/// 406 when the client will accept no JSON, 415 when it sent something other than JSON.
fn refuse_format(query: Option<&str>, headers: &HeaderMap) -> Option<Response> {
    let format = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| {
            pair.strip_prefix("_format=").map(|v| {
                v.replace("%2B", "+")
                    .replace("%2F", "/")
                    .to_ascii_lowercase()
            })
        });
    let asked_for_other = match &format {
        Some(f) => !is_json(f),
        None => header_text(headers, header::ACCEPT).is_some_and(|accept| !accepts_json(accept)),
    };
    if asked_for_other {
        return Some(outcome(
            StatusCode::NOT_ACCEPTABLE,
            "not-supported",
            "this server answers in FHIR JSON only (application/fhir+json)",
        ));
    }
    let sent_other = header_text(headers, header::CONTENT_TYPE).is_some_and(|ct| !is_json(ct));
    sent_other.then(|| {
        outcome(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not-supported",
            "send FHIR JSON (Content-Type: application/fhir+json)",
        )
    })
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `json`, `application/json`, `application/fhir+json`, with or without parameters.
fn is_json(media: &str) -> bool {
    let essence = media.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("json") || essence.to_ascii_lowercase().ends_with("json")
}

/// An Accept header is met when any of its ranges takes JSON (and is not refused with q=0).
fn accepts_json(accept: &str) -> bool {
    accept.split(',').any(|range| {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let refused = parts.any(|p| {
            p.trim()
                .strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f32>().ok())
                == Some(0.0)
        });
        !refused && (media == "*/*" || media == "application/*" || is_json(&media))
    })
}

/// An error answer that is not FHIR JSON gets the same status (and headers, such as `Allow`)
/// with an OperationOutcome saying what axum's plain-text body said, if anything.
async fn as_operation_outcome(response: Response) -> Response {
    let status = response.status();
    let is_fhir = header_text(response.headers(), header::CONTENT_TYPE)
        .is_some_and(|ct| ct.starts_with(FHIR_JSON));
    if !(status.is_client_error() || status.is_server_error()) || is_fhir {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // axum's rejections are short sentences; anything longer is not worth repeating.
    let said = axum::body::to_bytes(body, 4096)
        .await
        .ok()
        .and_then(|b| String::from_utf8(b.to_vec()).ok())
        .filter(|s| !s.trim().is_empty() && !s.contains('<'));
    let (code, default) = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            ("not-supported", "this resource does not offer that method")
        }
        StatusCode::PAYLOAD_TOO_LARGE => {
            ("too-costly", "the body is larger than this server takes")
        }
        StatusCode::NOT_FOUND => ("not-found", "no such resource"),
        s if s.is_server_error() => ("exception", "internal error (logged)"),
        _ => ("invalid", "the request could not be read"),
    };
    let diagnostics = said.unwrap_or_else(|| default.to_string());
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    parts.headers.remove(header::CONTENT_LENGTH);
    let body = resources::operation_outcome("error", code, &diagnostics).to_string();
    Response::from_parts(parts, Body::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_accepted_in_every_spelling_clients_send() {
        for accept in [
            "application/fhir+json",
            "application/json, text/plain",
            "*/*",
            "application/fhir+json; fhirVersion=4.0",
            "text/html, application/*;q=0.5",
        ] {
            assert!(accepts_json(accept), "{accept}");
        }
        for accept in [
            "application/fhir+xml",
            "text/xml",
            "application/json;q=0, text/html",
        ] {
            assert!(!accepts_json(accept), "{accept}");
        }
    }

    #[test]
    fn format_parameter_overrides_accept() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/fhir+xml"),
        );
        assert!(refuse_format(Some("_format=json"), &headers).is_none());
        assert!(refuse_format(
            Some("a=1&_format=application%2Ffhir%2Bxml"),
            &HeaderMap::new()
        )
        .is_some());
        assert!(refuse_format(Some("_format=xml"), &HeaderMap::new()).is_some());
    }
}
