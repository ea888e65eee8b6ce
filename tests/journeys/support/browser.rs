//! A browser that calls the portal's router in-process (no socket, no HTTP client), or a real
//! `portal serve` process over HTTP for the journeys that span several processes. It keeps its
//! own cookie jar, follows redirects like a browser (or shows them), sends the client address
//! as the connection's peer would, and fills in the CSRF token of the last page it saw.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, Response};
use axum::Router;
use tower::ServiceExt;

use super::page::Page;

/// Every in-process request comes from this address, as loopback requests to a real server do.
const PEER: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 40_000);
const MAX_REDIRECTS: usize = 10;
/// A request that takes longer has hung; the test fails instead of waiting forever.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Where a browser's requests go.
#[derive(Clone)]
enum Portal {
    InProcess(Router),
    /// A portal process at this origin (`http://127.0.0.1:port`).
    Served(reqwest::Client, String),
}

/// One browser. A clone is another tab of it: same cookies, its own CSRF token.
#[derive(Clone)]
pub struct Browser {
    portal: Portal,
    /// The origin pages' URLs are given under (also what identifies this portal to `fresh_totp`).
    pub base: String,
    pub csrf: Option<String>,
    jar: Arc<Mutex<BTreeMap<String, String>>>,
    headers: HeaderMap,
    follow_redirects: bool,
}

impl Browser {
    pub(super) fn new(portal: Router, base: String) -> Self {
        Self::over(Portal::InProcess(portal), base)
    }

    /// A browser of the portal process at `origin`. `identity` names the database behind it, so
    /// that processes sharing one database share their TOTP replay guard in `fresh_totp`.
    pub fn served(origin: &str, identity: &str) -> Self {
        Self::over(
            Portal::Served(http_client(), origin.to_string()),
            identity.to_string(),
        )
    }

    /// The same browser (cookies and all) talking to another portal process, as a load
    /// balancer sends a user's next request to any instance.
    pub fn switch_to(&mut self, origin: &str) {
        self.portal = Portal::Served(http_client(), origin.to_string());
    }

    fn over(portal: Portal, base: String) -> Self {
        Self {
            portal,
            base,
            csrf: None,
            jar: Arc::default(),
            headers: HeaderMap::new(),
            follow_redirects: true,
        }
    }

    /// This browser, showing redirects instead of following them.
    pub fn without_redirects(mut self) -> Self {
        self.follow_redirects = false;
        self
    }

    /// This browser, sending `name: value` on every request.
    pub fn with_header(mut self, name: &'static str, value: &str) -> Self {
        let value = HeaderValue::from_str(value).expect("a header value");
        self.headers.insert(HeaderName::from_static(name), value);
        self
    }

    /// A new browser holding a copy of this one's cookies (a stolen cookie jar): what either
    /// does to its cookies afterwards, the other does not see.
    pub fn copy(&self) -> Self {
        let cookies = self.jar.lock().expect("cookie jar").clone();
        Self {
            jar: Arc::new(Mutex::new(cookies)),
            ..self.clone()
        }
    }

    /// The value of the cookie `name`, if the browser holds one.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.jar.lock().expect("cookie jar").get(name).cloned()
    }

    pub async fn get(&mut self, path: &str) -> Page {
        self.send(Method::GET, path, None, Vec::new()).await
    }

    /// POST a form with the CSRF token of the last page this browser saw.
    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let token = self.csrf.clone().unwrap_or_default();
        let mut form: Vec<(&str, &str)> = vec![("csrf", token.as_str())];
        form.extend_from_slice(fields);
        self.post_raw(path, &form).await
    }

    /// POST exactly these fields (no CSRF token added).
    pub async fn post_raw(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let form = serde_urlencoded::to_string(fields).expect("a form");
        let content_type = "application/x-www-form-urlencoded";
        self.send(Method::POST, path, Some(content_type), form.into_bytes())
            .await
    }

    pub async fn put_json(&mut self, path: &str, body: &str) -> Page {
        let content_type = "application/fhir+json";
        self.send(Method::PUT, path, Some(content_type), body.into())
            .await
    }

    /// POST a FHIR JSON body.
    pub async fn post_json(&mut self, path: &str, body: &str) -> Page {
        let content_type = "application/fhir+json";
        self.send(Method::POST, path, Some(content_type), body.into())
            .await
    }

    pub async fn login_with(&mut self, username: &str, password: &str) -> Page {
        self.get("/login").await;
        self.post("/login", &[("username", username), ("password", password)])
            .await
    }

    /// Sign in as a demo user, answering the second-factor step when there is one.
    pub async fn login(&mut self, username: &str) -> Page {
        let user = super::demo(username);
        let page = self.login_with(username, user.password).await;
        match (&user.totp, page.url.ends_with("/login/second-factor")) {
            (Some(secret), true) => {
                let code = super::fresh_totp(&self.base, username, secret).await;
                self.post("/login/second-factor", &[("code", &code)]).await
            }
            _ => page,
        }
    }

    pub async fn logout(&mut self) -> Page {
        self.post("/logout", &[]).await
    }

    /// One request and, when following, its redirects the way browsers follow them: a 303, or
    /// a 301/302 after a POST, becomes a GET without a body.
    async fn send(
        &mut self,
        mut method: Method,
        path: &str,
        mut content_type: Option<&str>,
        mut body: Vec<u8>,
    ) -> Page {
        let mut path = path.to_string();
        for _ in 0..=MAX_REDIRECTS {
            let response = self
                .once(method.clone(), &path, content_type, body.clone())
                .await;
            let location = response
                .headers()
                .get(header::LOCATION)
                .and_then(|l| l.to_str().ok());
            match location {
                Some(location) if self.follow_redirects && response.status().is_redirection() => {
                    let status = response.status().as_u16();
                    if status == 303 || (matches!(status, 301 | 302) && method == Method::POST) {
                        method = Method::GET;
                        content_type = None;
                        body.clear();
                    }
                    path = location
                        .strip_prefix(self.base.as_str())
                        .unwrap_or(location)
                        .to_string();
                }
                _ => return self.page(&path, response).await,
            }
        }
        panic!("more than {MAX_REDIRECTS} redirects from {path}");
    }

    async fn once(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Response<Body> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::from(body))
            .expect("a request");
        let headers = request.headers_mut();
        headers.extend(self.headers.clone());
        if let Some(content_type) = content_type {
            let value = HeaderValue::from_str(content_type).expect("a content type");
            headers.insert(header::CONTENT_TYPE, value);
        }
        if let Some(cookies) = self.cookie_header() {
            headers.insert(header::COOKIE, cookies);
        }
        request.extensions_mut().insert(ConnectInfo(PEER));
        let response = tokio::time::timeout(TIMEOUT, self.dispatch(request))
            .await
            .unwrap_or_else(|_| panic!("{path} gave no answer in {TIMEOUT:?}"));
        self.keep_cookies(response.headers());
        response
    }

    async fn dispatch(&self, request: Request<Body>) -> Response<Body> {
        match &self.portal {
            Portal::InProcess(router) => router
                .clone()
                .oneshot(request)
                .await
                .unwrap_or_else(|never| match never {}),
            Portal::Served(client, origin) => over_http(client, origin, request).await,
        }
    }

    fn cookie_header(&self) -> Option<HeaderValue> {
        let jar = self.jar.lock().expect("cookie jar");
        let pairs: Vec<String> = jar
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        (!pairs.is_empty()).then(|| HeaderValue::from_str(&pairs.join("; ")).expect("cookies"))
    }

    /// Store what `Set-Cookie` sets and forget what it removes (an empty value or
    /// `Max-Age=0`). Every cookie of the portal is for path `/` on its own host, so name is key.
    fn keep_cookies(&self, headers: &HeaderMap) {
        let mut jar = self.jar.lock().expect("cookie jar");
        for set in headers.get_all(header::SET_COOKIE) {
            let set = set.to_str().expect("a Set-Cookie header is text");
            let mut parts = set.split(';').map(str::trim);
            let Some((name, value)) = parts.next().and_then(|p| p.split_once('=')) else {
                continue;
            };
            let removed = value.is_empty()
                || parts.any(|attribute| attribute.eq_ignore_ascii_case("max-age=0"));
            if removed {
                jar.remove(name);
            } else {
                jar.insert(name.to_string(), value.to_string());
            }
        }
    }

    async fn page(&mut self, path: &str, response: Response<Body>) -> Page {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("a response body");
        let page = Page {
            status,
            url: format!("{}{path}", self.base),
            body: String::from_utf8_lossy(&bytes).into_owned(),
            headers,
        };
        if let Some(token) = page.input_value("csrf") {
            self.csrf = Some(token);
        }
        page
    }
}

/// A client that leaves cookies and redirects to the browser, as the in-process path does.
fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client")
}

async fn over_http(
    client: &reqwest::Client,
    origin: &str,
    request: Request<Body>,
) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .expect("a request body");
    let sent = client
        .request(parts.method, format!("{origin}{}", parts.uri))
        .headers(parts.headers)
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{origin}{}: {e}", parts.uri));
    let mut response = Response::builder().status(sent.status());
    if let Some(headers) = response.headers_mut() {
        headers.extend(sent.headers().clone());
    }
    let bytes = sent.bytes().await.expect("a response body");
    response.body(Body::from(bytes)).expect("a response")
}
