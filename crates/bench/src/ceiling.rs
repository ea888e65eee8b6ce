//! The machine's ceiling: a bare axum handler returning a fixed 2 KB HTML page, measured with
//! the same generator and connections as the portal. Each scenario's ratio to it says how much
//! of what this machine can serve over HTTP the portal's real work leaves.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

/// The line the ceiling prints when it listens, followed by its base URL.
pub const LISTENING: &str = "ceiling listening on ";
pub const PAGE_BYTES: usize = 2048;

fn page() -> &'static str {
    static PAGE: OnceLock<String> = OnceLock::new();
    PAGE.get_or_init(|| {
        let head = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>ceiling</title></head><body><main><p>";
        let tail = "</p></main></body></html>\n";
        let filler = "x".repeat(PAGE_BYTES - head.len() - tail.len());
        format!("{head}{filler}{tail}")
    })
}

async fn fixed_page() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page())
}

pub async fn serve(bind: &str) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(bind).await?;
    println!("{LISTENING}http://{}", listener.local_addr()?);
    let app = Router::new().route("/", get(fixed_page));
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_page_is_two_kilobytes() {
        assert_eq!(super::page().len(), super::PAGE_BYTES);
    }
}
