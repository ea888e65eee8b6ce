use maud::{html, Markup};
use records_domain::model::{LabResult, Prescription, TreatmentPlan};

use super::components::{lab_table, plan_card, prescription_table};
use super::layout::{page, Frame, RecordBanner};
use crate::auth::CurrentUser;

/// What the overview shows; `None` for the parts the viewer's basis does not cover.
#[derive(Default)]
pub struct Summary {
    pub banner: RecordBanner,
    pub labs: Option<Vec<LabResult>>,
    pub results_pending: bool,
    pub prescriptions: Option<Vec<Prescription>>,
    pub plans: Option<Vec<TreatmentPlan>>,
    pub new_accesses: Option<i64>,
}

pub fn pending_note() -> Markup {
    html! { p.notice role="status" { "Some results may be pending: your doctor may want to talk with you before they are shown here." } }
}

pub fn overview(user: &CurrentUser, csrf: &str, s: Summary) -> Markup {
    let frame = Frame {
        user,
        csrf,
        record: Some(s.banner),
    };
    page(
        "Overview",
        Some(&frame),
        html! {
            @if let Some(n) = s.new_accesses {
                @if n > 0 {
                    p.notice role="status" { a href="/me/access-log" { (n) " new " (if n == 1 { "access" } else { "accesses" }) " to this record since the last visit." } }
                }
            }
            @if let Some(labs) = &s.labs {
                section {
                    h2 { "Latest lab results" }
                    @if s.results_pending { (pending_note()) }
                    @if labs.is_empty() { p.hint { "No results yet." } } @else { (lab_table(labs, "/me/labs", false)) }
                    p { a href="/me/labs" { "All lab results" } }
                }
            }
            @if let Some(rx) = &s.prescriptions {
                section {
                    h2 { "Active prescriptions" }
                    (prescription_table(rx, "Active prescriptions"))
                    p { a href="/me/prescriptions" { "All prescriptions" } }
                }
            }
            @if let Some(plans) = &s.plans {
                section {
                    h2 { "Current treatment plans" }
                    @if plans.is_empty() { p.hint { "No current plans." } }
                    @for plan in plans { (plan_card(plan, html! {})) }
                }
            }
        },
    )
}
