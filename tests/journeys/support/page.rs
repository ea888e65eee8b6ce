//! One answer of the portal as the browser got it, and what a test reads from it: values in the
//! place a user sees them (parsed HTML and CSS selectors), not somewhere in the raw body.

use axum::http::HeaderMap;
use scraper::{ElementRef, Html, Node, Selector};

#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub url: String,
    pub body: String,
    pub headers: HeaderMap,
}

impl Page {
    pub fn contains(&self, text: &str) -> bool {
        self.body.contains(text)
    }

    #[track_caller]
    pub fn assert_ok(&self) -> &Self {
        assert_eq!(
            self.status, 200,
            "{} gave {}: {}",
            self.url, self.status, self.body
        );
        self
    }

    pub fn is_login_page(&self) -> bool {
        self.url.ends_with("/login") && self.select_text("h1").iter().any(|h| h == "Sign in")
    }

    /// The text of every element `css` selects, in document order, white space collapsed.
    pub fn select_text(&self, css: &str) -> Vec<String> {
        let html = Html::parse_document(&self.body);
        html.select(&selector(css)).map(text_of).collect()
    }

    /// The rows of the table(s) `table_css` selects: each row's cells' text (`th` and `td`),
    /// header rows included, so `rows[0]` of a table with a head is its column names.
    pub fn table_rows(&self, table_css: &str) -> Vec<Vec<String>> {
        let html = Html::parse_document(&self.body);
        let cell = selector("th, td");
        html.select(&selector(&format!("{table_css} tr")))
            .map(|row| row.select(&cell).map(text_of).collect())
            .collect()
    }

    /// Whether anything on the page matches `css`.
    pub fn has(&self, css: &str) -> bool {
        let html = Html::parse_document(&self.body);
        html.select(&selector(css)).next().is_some()
    }

    /// The value of the first `name="..." value="..."` input with that name.
    pub fn input_value(&self, name: &str) -> Option<String> {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self.body.find(&marker)? + marker.len();
        let end = self.body[start..].find('"')? + start;
        Some(self.body[start..end].to_string())
    }

    /// The first link (href) that starts with `prefix`.
    pub fn link_starting(&self, prefix: &str) -> Option<String> {
        let marker = format!("href=\"{prefix}");
        let start = self.body.find(&marker)? + 6;
        let end = self.body[start..].find('"')? + start;
        Some(self.body[start..end].replace("&amp;", "&"))
    }
}

#[track_caller]
fn selector(css: &str) -> Selector {
    Selector::parse(css).unwrap_or_else(|e| panic!("CSS selector {css}: {e}"))
}

/// The text as a reader sees it: text nodes joined as they stand (so `" (" strong{"x"} ")"`
/// reads "(x)"), a line break as a space, white space collapsed.
fn text_of(element: ElementRef<'_>) -> String {
    let mut text = String::new();
    for node in element.descendants() {
        match node.value() {
            Node::Text(t) => text.push_str(t),
            Node::Element(e) if e.name() == "br" => text.push(' '),
            _ => {}
        }
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
