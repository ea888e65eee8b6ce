//! The auditor's pages: the filtered event list, the review queue, statistics and verification.

use std::collections::HashMap;
use std::time::Duration;

use access_control::audit::query::{Cursor, Review};
use access_control::audit::statistics::ClinicianStats;
use access_control::audit::verify::VerifyReport;
use access_control::audit::AuditEvent;
use maud::{html, Markup};
use records_domain::model::{Clinic, Patient};
use uuid::Uuid;

use super::clock;
use super::layout::{csrf_field, page, Frame};
use crate::auth::CurrentUser;
use crate::forms::FilterForm;

pub struct Results<'a> {
    pub events: &'a [AuditEvent],
    /// Who the events are about, by patient id.
    pub people: &'a HashMap<Uuid, Patient>,
    pub next: Option<Cursor>,
    pub elapsed: Duration,
}

fn audit_page(title: &str, user: &CurrentUser, csrf: &str, body: Markup) -> Markup {
    let frame = Frame {
        user,
        csrf,
        record: None,
    };
    page(title, Some(&frame), body)
}

const OUTCOMES: [&str; 4] = ["allowed", "denied", "success", "failure"];
const BASES: [&str; 6] = [
    "own_record",
    "guardian",
    "power_of_attorney",
    "gp_listing",
    "care_relationship",
    "emergency_override",
];

/// The filter's fields as hidden inputs, so paging and export repeat the same filter.
fn hidden_filter(form: &FilterForm) -> Markup {
    html! {
        @for (name, value) in [("cpr", &form.cpr), ("actor", &form.actor), ("clinic", &form.clinic), ("action", &form.action), ("outcome", &form.outcome), ("basis", &form.basis), ("from", &form.from), ("until", &form.until)] {
            input type="hidden" name=(name) value=(value);
        }
    }
}

fn filter_form(csrf: &str, form: &FilterForm, clinics: &[Clinic]) -> Markup {
    html! {
        form.filters method="post" action="/audit" {
            (csrf_field(csrf))
            div.grid {
                div { label for="cpr" { "Patient CPR" } input #cpr name="cpr" value=(form.cpr) autocomplete="off" maxlength="11"; }
                div { label for="actor" { "Actor (user name)" } input #actor name="actor" value=(form.actor) autocomplete="off"; }
                div {
                    label for="clinic" { "Clinic" }
                    select #clinic name="clinic" {
                        option value="" { "Any" }
                        @for c in clinics { option value=(c.id) selected[form.clinic == c.id.to_string()] { (c.name) } }
                    }
                }
                div { label for="action" { "Action" } input #action name="action" value=(form.action) placeholder="e.g. read lab_results"; }
                div {
                    label for="outcome" { "Outcome" }
                    select #outcome name="outcome" {
                        option value="" { "Any" }
                        @for o in OUTCOMES { option value=(o) selected[form.outcome == o] { (o) } }
                    }
                }
                div {
                    label for="basis" { "Basis" }
                    select #basis name="basis" {
                        option value="" { "Any" }
                        @for b in BASES { option value=(b) selected[form.basis == b] { (b) } }
                    }
                }
                div { label for="from" { "From day" } input #from type="date" name="from" value=(form.from); }
                div { label for="until" { "To day (included)" } input #until type="date" name="until" value=(form.until); }
            }
            button type="submit" { "Search" }
        }
    }
}

pub fn workbench(
    user: &CurrentUser,
    csrf: &str,
    form: &FilterForm,
    clinics: &[Clinic],
    results: Result<Results, &str>,
) -> Markup {
    audit_page(
        "Audit events",
        user,
        csrf,
        html! {
            (filter_form(csrf, form, clinics))
            form method="post" action="/audit/export.csv" {
                (csrf_field(csrf))
                (hidden_filter(form))
                button type="submit" { "Export all matching events as CSV" }
            }
            @match results {
                Err(problem) => { p.notice.error role="alert" { (problem) } }
                Ok(r) => {
                    p.hint { (r.events.len()) " events on this page, newest first (" (format!("{:.1}", r.elapsed.as_secs_f64() * 1000.0)) " ms)." }
                    (event_table(r.events, r.people, &clinic_names(clinics)))
                    @if let Some(next) = r.next {
                        form method="post" action="/audit" {
                            (csrf_field(csrf))
                            (hidden_filter(form))
                            input type="hidden" name="after_at" value=(next.occurred_at);
                            input type="hidden" name="after_id" value=(next.id);
                            button type="submit" { "Next page" }
                        }
                    }
                }
            }
        },
    )
}

fn clinic_names(clinics: &[Clinic]) -> HashMap<Uuid, &str> {
    clinics.iter().map(|c| (c.id, c.name.as_str())).collect()
}

/// The auditors' table: people by name (patients with their CPR number, staff with their
/// clinic), times in Danish time to the second.
pub fn event_table(
    events: &[AuditEvent],
    people: &HashMap<Uuid, Patient>,
    clinics: &HashMap<Uuid, &str>,
) -> Markup {
    html! {
        div.table-wrap tabindex="0" role="region" aria-label="Table, scrolls sideways on small screens" {
            table.events {
                caption.visually-hidden { "Audit events" }
                thead { tr { th scope="col" { "Time (Copenhagen)" } th scope="col" { "Actor" } th scope="col" { "Action" } th scope="col" { "Patient" } th scope="col" { "Basis" } th scope="col" { "Outcome" } th scope="col" { "Reason" } th scope="col" { "Address" } th scope="col" { "Chain" } } }
                tbody {
                    @for e in events {
                        tr.emergency[e.basis == "emergency_override"] {
                            td { time datetime=(e.occurred_at) { (clock::second_of(&e.occurred_at)) } }
                            td { (e.actor_name) br; small { (e.actor_role) @if let Some(clinic) = e.actor_clinic_id.and_then(|c| clinics.get(&c)) { ", " (clinic) } } }
                            td { (e.action) @if let Some(id) = &e.resource_id { br; small { (e.resource_type) " " (id) } } }
                            td {
                                @if let Some(p) = e.patient_id {
                                    @match people.get(&p) {
                                        Some(patient) => { (patient.full_name()) br; small { "CPR " (patient.cpr.formatted()) } }
                                        None => { code { (p) } }
                                    }
                                }
                                @if let Some(b) = &e.on_behalf_of { br; small { "on behalf of " (b) } }
                            }
                            td { (e.basis) }
                            td { (e.outcome) }
                            td { (e.reason) }
                            td { (e.client_addr) }
                            td { small { (e.chain_key.get(..8).unwrap_or(&e.chain_key)) " #" (e.seq) } }
                        }
                    }
                }
            }
        }
    }
}

pub fn reviews(user: &CurrentUser, csrf: &str, items: &[(Review, Option<AuditEvent>)]) -> Markup {
    audit_page(
        "Review queue",
        user,
        csrf,
        html! {
            p { "Emergency overrides, overrides that followed a refusal, and accesses that patients did not recognise. Close each with a note: what was found and what was done. Patients see the note of their own reports." }
            @if items.is_empty() { p.hint { "Nothing to review." } }
            @for (review, event) in items {
                article.card.review id={ "r-" (review.id) } {
                    h2 {
                        (match review.kind.as_str() {
                            "emergency_override" => "Emergency override",
                            "denial_then_override" => "Override after a refusal",
                            "patient_report" => "Patient did not recognise an access",
                            other => other,
                        })
                        " · " (review.status)
                    }
                    @if let Some(e) = event {
                        p { strong { (e.actor_name) } " (" (e.actor_role) ") · " (e.action) " · " (clock::second_of(&e.occurred_at)) " · basis " (e.basis) }
                        @if let Some(p) = e.patient_id { p { "Patient " code { (p) } } }
                    }
                    @if !review.comment.is_empty() { p { "Stated: " q { (review.comment) } } }
                    @if review.status == "open" {
                        form method="post" action={ "/audit/reviews/" (review.id) "/close" } {
                            (csrf_field(csrf))
                            label for={ "note-" (review.id) } { "Note" }
                            textarea id={ "note-" (review.id) } name="note" required minlength="5" maxlength="2000" rows="3" {}
                            button type="submit" { "Mark reviewed" }
                        }
                    } @else {
                        p { "Closed " (review.closed_at.as_deref().unwrap_or("")) " by " (review.closed_by.as_deref().unwrap_or("")) ": " (review.resolution_note.as_deref().unwrap_or("")) }
                    }
                }
            }
        },
    )
}

pub fn stats(user: &CurrentUser, csrf: &str, days: i64, rows: &[ClinicianStats]) -> Markup {
    let max = rows.iter().map(|r| r.accesses).max().unwrap_or(0).max(1) as f64;
    let (bar_h, label_w, chart_w) = (28.0, 180.0, 640.0);
    let height = bar_h * rows.len().max(1) as f64 + 10.0;
    let scale = |n: i64| (chart_w - label_w - 60.0) * n as f64 / max;
    audit_page(
        "Access statistics",
        user,
        csrf,
        html! {
            p { "Clinicians' accesses to records over the last " (days) " days. Dark: emergency overrides; light: other accesses." }
            figure.chart {
                svg viewBox={ "0 0 " (chart_w) " " (height) } role="img" aria-label={ "Accesses per clinician over the last " (days) " days" } xmlns="http://www.w3.org/2000/svg" {
                    @for (i, r) in rows.iter().enumerate() {
                        @let y = i as f64 * bar_h + 4.0;
                        text.tick x="0" y=(format!("{:.1}", y + 17.0)) { (r.actor_name) }
                        rect.bar x=(label_w) y=(format!("{y:.1}")) width=(format!("{:.1}", scale(r.accesses))) height="20" {}
                        rect.bar.override x=(label_w) y=(format!("{y:.1}")) width=(format!("{:.1}", scale(r.overrides))) height="20" {}
                        text.tick x=(format!("{:.1}", label_w + scale(r.accesses) + 6.0)) y=(format!("{:.1}", y + 17.0)) { (r.accesses) }
                    }
                }
            }
            div.table-wrap tabindex="0" role="region" aria-label="Table, scrolls sideways on small screens" {
                table {
                    caption { "Per clinician" }
                    thead { tr { th scope="col" { "Clinician" } th scope="col" { "Accesses" } th scope="col" { "Per active day" } th scope="col" { "Overrides" } th scope="col" { "Share of overrides" } th scope="col" { "Outside their list" } th scope="col" { "Refused" } } }
                    tbody {
                        @for r in rows {
                            tr {
                                td { (r.actor_name) }
                                td.num { (r.accesses) }
                                td.num { (format!("{:.1}", r.per_day())) }
                                td.num { (r.overrides) }
                                td.num { (format!("{:.0} %", r.override_share() * 100.0)) }
                                td.num { (r.outside_list) }
                                td.num { (r.denials) }
                            }
                        }
                    }
                }
            }
        },
    )
}

pub fn verify(user: &CurrentUser, csrf: &str, report: &VerifyReport, elapsed: Duration) -> Markup {
    audit_page(
        "Verify the audit log",
        user,
        csrf,
        html! {
            @if report.is_intact() {
                p.notice role="status" { "Intact: " (report.chains) " chains with " (report.events) " events recomputed in " (format!("{:.2}", elapsed.as_secs_f64())) " s; every hash matches. The transparency log's " (report.log.size) " leaves make the tree of each of its " (report.log.checkpoints) " signed checkpoints." }
            } @else {
                p.notice.error role="alert" { (report.broken.len()) " broken links in " (report.chains) " chains (" (report.events) " events); " (report.log.problems.len()) " problems in the transparency log." }
                @if !report.log.problems.is_empty() {
                    ul.log-problems { @for problem in &report.log.problems { li { (problem) } } }
                }
                div.table-wrap tabindex="0" role="region" aria-label="Table, scrolls sideways on small screens" {
                    table {
                        caption { "Broken links" }
                        thead { tr { th scope="col" { "Chain (patient)" } th scope="col" { "Sequence" } th scope="col" { "Event" } th scope="col" { "Problem" } } }
                        tbody {
                            @for b in &report.broken {
                                tr { td { code { (b.chain_key) } } td.num { (b.seq) } td { code { (b.event_id.as_deref().unwrap_or("")) } } td { (b.problem) } }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// The newest signed checkpoints of the transparency log and who cosigned them.
pub fn checkpoints(
    user: &CurrentUser,
    csrf: &str,
    log_key: &str,
    shown: &[access_control::audit::log::StoredCheckpoint],
) -> Markup {
    audit_page(
        "Transparency log checkpoints",
        user,
        csrf,
        html! {
            p { "Every audit event is a leaf of one Merkle tree (RFC 9162). The portal signs the tree's size and root every few seconds; witnesses cosign each checkpoint after checking that it extends the last one they saw. The log's public key:" }
            p { code.key { (log_key) } }
            p { "The public endpoints " code { "/transparency/checkpoint" } ", " code { "/transparency/checkpoints" } " and " code { "/transparency/consistency?old=&new=" } " serve the same to anyone." }
            @if shown.is_empty() {
                p.notice role="status" { "No checkpoint has been signed yet." }
            } @else {
                div.table-wrap tabindex="0" role="region" aria-label="Table, scrolls sideways on small screens" {
                    table {
                        caption { "Newest checkpoints" }
                        thead { tr { th scope="col" { "Events" } th scope="col" { "Root (SHA-256)" } th scope="col" { "Signed" } th scope="col" { "Witnessed by" } } }
                        tbody {
                            @for c in shown {
                                tr {
                                    td.num { (c.size) }
                                    td { code { (c.root.to_hex()) } }
                                    td { (c.signed_at) }
                                    td { @if c.witnesses.is_empty() { "not yet" } @else { (c.witnesses.join(", ")) } }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}
