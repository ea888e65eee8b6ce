use access_control::Role;
use axum::http::StatusCode;
use maud::{html, Markup, DOCTYPE};

use crate::auth::CurrentUser;

/// Whose record is on screen, shown on every page of a record.
#[derive(Default)]
pub struct RecordBanner {
    pub name: String,
    pub birth_date: String,
    /// "Your own record", "As guardian", "Emergency override: 1 h 52 min left", ...
    pub relation: String,
    pub emergency: bool,
}

pub struct Frame<'a> {
    pub user: &'a CurrentUser,
    pub csrf: &'a str,
    pub record: Option<RecordBanner>,
}

fn nav_links(role: Role) -> &'static [(&'static str, &'static str)] {
    match role {
        Role::Patient => &[
            ("/me", "Overview"),
            ("/me/timeline", "Timeline"),
            ("/me/labs", "Lab results"),
            ("/me/prescriptions", "Prescriptions"),
            ("/me/plans", "Treatment plans"),
            ("/me/diagnoses", "Diagnoses"),
            ("/me/allergies", "Allergies"),
            ("/me/vaccinations", "Vaccinations"),
            ("/me/contacts", "Contacts"),
            ("/me/procedures", "Procedures"),
            ("/me/reports", "Reports"),
            ("/me/imaging", "Imaging"),
            ("/me/access-log", "Who looked at my record"),
            ("/me/blocks", "Blocks"),
            ("/me/proxies", "Proxies"),
            ("/account/security", "Security"),
        ],
        Role::Clinician => &[
            ("/clinician", "Find patient"),
            ("/clinician/renewals", "Renewal requests"),
            ("/account/password", "Password"),
        ],
        Role::Auditor => &[
            ("/audit", "Audit events"),
            ("/audit/reviews", "Review queue"),
            ("/audit/stats", "Statistics"),
            ("/audit/verify", "Verify log"),
            ("/audit/checkpoints", "Checkpoints"),
        ],
        Role::Administrator => &[
            ("/admin/users", "Users"),
            ("/admin/clinics", "Clinics"),
            ("/admin/listings", "GP listings"),
            ("/admin/relationships", "Care relationships"),
        ],
        Role::System => &[],
    }
}

pub fn page(title: &str, frame: Option<&Frame>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Patient portal" }
                link rel="stylesheet" href="/static/portal.css";
                link rel="icon" href="/static/favicon.svg" type="image/svg+xml";
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/" { "Patient portal" }
                    @if let Some(f) = frame {
                        nav aria-label="Main" {
                            ul {
                                @for (href, label) in nav_links(f.user.user.role) {
                                    li { a href=(href) { (label) } }
                                }
                            }
                        }
                        div.who {
                            span { (f.user.user.display_name) " (" (f.user.user.role.as_str()) ")" }
                            form method="post" action="/logout" {
                                input type="hidden" name="csrf" value=(f.csrf);
                                button.link type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                @if let Some(banner) = frame.and_then(|f| f.record.as_ref()) {
                    div.record-banner.emergency[banner.emergency] role="status" {
                        strong { (banner.name) } " · born " (banner.birth_date) " · " (banner.relation)
                    }
                }
                main #main {
                    h1 { (title) }
                    (body)
                }
                footer { p { "Every access to a record is logged and shown to the patient." } }
            }
        }
    }
}

pub fn error_page(status: StatusCode, message: &str) -> Markup {
    let title = match status.as_u16() {
        400 => "The request could not be used",
        401 | 403 => "Not allowed",
        404 => "Not found",
        409 => "Changed by someone else",
        413 => "Too large",
        429 => "Too many attempts",
        503 => "Busy",
        _ => "Something went wrong",
    };
    page(
        title,
        None,
        html! {
            p.notice.error role="alert" { (message) }
            p { a href="/" { "Back to the start page" } }
        },
    )
}

/// A hidden CSRF field for a form.
pub fn csrf_field(token: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(token); }
}
