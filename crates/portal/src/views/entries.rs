//! Diagnoses, allergies, vaccinations, contacts, procedures, reports and imaging: each kind listed in
//! one table, the same on the patient's pages, the clinician's and the overviews.

use maud::{html, Markup};
use records_domain::model::{
    Allergy, Contact, ContactStatus, Diagnosis, ImagingStudy, Procedure, Report, Vaccination,
};
use records_domain::store::kept::Kept;
use time::{Duration, OffsetDateTime};

use super::components::day;

/// A kind of record shown as a list, with the path segment of its page.
pub trait Listed: Kept + 'static {
    const TITLE: &'static str;
    /// `/me/{PATH}` and `/clinician/patients/{id}/{PATH}`.
    const PATH: &'static str;
    const NONE: &'static str;
    fn rows(items: &[Self]) -> Markup;
    const HEADINGS: &'static [&'static str];
    /// What the overview shows first: what still applies (all vaccinations do).
    fn current(&self) -> bool;
}

pub fn table<T: Listed>(items: &[T], caption: &str) -> Markup {
    html! {
        @if items.is_empty() { p.hint { (T::NONE) } } @else {
            div.table-wrap tabindex="0" role="region" aria-label="Table, scrolls sideways on small screens" {
                table {
                    caption { (caption) }
                    thead { tr { @for h in T::HEADINGS { th scope="col" { (h) } } } }
                    tbody { (T::rows(items)) }
                }
            }
        }
    }
}

/// The overview's section for a kind: what still applies, and a link to the whole list.
pub fn overview_section<T: Listed>(heading: &str, items: &[T], base: &str) -> Markup {
    let current: Vec<T> = items.iter().filter(|i| i.current()).cloned().collect();
    html! {
        section {
            h2 { (heading) }
            (table(&current, heading))
            p { a href={ (base) "/" (T::PATH) } { "All " (T::TITLE.to_lowercase()) } }
        }
    }
}

fn maybe_day(t: Option<OffsetDateTime>) -> String {
    t.map(day).unwrap_or_default()
}

impl Listed for Diagnosis {
    const TITLE: &'static str = "Diagnoses";
    const PATH: &'static str = "diagnoses";
    const NONE: &'static str = "No diagnoses recorded.";
    const HEADINGS: &'static [&'static str] = &[
        "Diagnosis",
        "Code",
        "Status",
        "Since",
        "Until",
        "Recorded by",
    ];
    fn rows(items: &[Self]) -> Markup {
        html! {
            @for d in items {
                tr {
                    td { (d.display) }
                    td { code { (d.code) } }
                    td { (d.clinical_status.as_str()) }
                    td { (maybe_day(d.onset_at.or(d.recorded_at))) }
                    td { (maybe_day(d.abated_at)) }
                    td { (d.recorder) }
                }
            }
        }
    }
    fn current(&self) -> bool {
        self.clinical_status.is_current()
    }
}

impl Listed for Allergy {
    const TITLE: &'static str = "Allergies";
    const PATH: &'static str = "allergies";
    const NONE: &'static str = "No allergies recorded.";
    const HEADINGS: &'static [&'static str] = &[
        "Substance",
        "Criticality",
        "Reactions",
        "Status",
        "Recorded",
        "Recorded by",
    ];
    fn rows(items: &[Self]) -> Markup {
        html! {
            @for a in items {
                tr {
                    td { (a.substance) @if let Some(c) = &a.category { br; small { (c) } } }
                    td { @match a.criticality.map(|c| c.as_str()) { Some("high") => strong { "high" }, Some(c) => (c), None => "" } }
                    td {
                        @for (i, r) in a.reactions.iter().enumerate() {
                            @if i > 0 { "; " }
                            (r.manifestation) @if let Some(s) = &r.severity { " (" (s) ")" }
                        }
                    }
                    td { (a.clinical_status.as_str()) }
                    td { (maybe_day(a.recorded_at)) }
                    td { (a.recorder) }
                }
            }
        }
    }
    fn current(&self) -> bool {
        self.clinical_status.is_current()
    }
}

impl Listed for Vaccination {
    const TITLE: &'static str = "Vaccinations";
    const PATH: &'static str = "vaccinations";
    const NONE: &'static str = "No vaccinations recorded.";
    const HEADINGS: &'static [&'static str] =
        &["Vaccine", "Date", "Status", "Lot", "Site", "Given by"];
    fn rows(items: &[Self]) -> Markup {
        html! {
            @for v in items {
                tr {
                    td { (v.vaccine_name) }
                    td { (day(v.occurred_at)) }
                    td { @if v.status.as_str() == "not-done" { "not given" } @else { "given" } }
                    td { (v.lot_number.as_deref().unwrap_or("")) }
                    td { (v.site.as_deref().unwrap_or("")) }
                    td { (v.performer) }
                }
            }
        }
    }
    fn current(&self) -> bool {
        true
    }
}

/// How far back the overview counts a contact as recent.
const RECENT_CONTACT: Duration = Duration::days(90);

impl Listed for Contact {
    const TITLE: &'static str = "Contacts";
    const PATH: &'static str = "contacts";
    const NONE: &'static str = "No contacts recorded.";
    const HEADINGS: &'static [&'static str] = &["When", "Kind", "What", "Where", "With", "Why"];
    fn rows(items: &[Self]) -> Markup {
        html! {
            @for c in items {
                tr {
                    td { (day(c.started_at)) @if c.status == ContactStatus::Planned { br; small { "planned" } } }
                    td { (c.class_text()) }
                    td { (c.type_display) }
                    td { (c.place) }
                    td { (c.practitioner) }
                    td { (c.reason.as_deref().unwrap_or("")) }
                }
            }
        }
    }
    /// Upcoming, under way, or in the last three months.
    fn current(&self) -> bool {
        matches!(
            self.status,
            ContactStatus::Planned
                | ContactStatus::Arrived
                | ContactStatus::Triaged
                | ContactStatus::InProgress
        ) || self.started_at >= OffsetDateTime::now_utc() - RECENT_CONTACT
    }
}

impl Listed for Procedure {
    const TITLE: &'static str = "Procedures";
    const PATH: &'static str = "procedures";
    const NONE: &'static str = "No procedures recorded.";
    const HEADINGS: &'static [&'static str] = &["Procedure", "Date", "Status", "By", "Why"];
    fn rows(items: &[Self]) -> Markup {
        html! {
            @for p in items {
                tr {
                    td { (p.display) }
                    td { (day(p.performed_at)) }
                    td { (p.status.as_str()) }
                    td { (p.performer) }
                    td { (p.reason.as_deref().unwrap_or("")) }
                }
            }
        }
    }
    fn current(&self) -> bool {
        true
    }
}

impl Listed for ImagingStudy {
    const TITLE: &'static str = "Imaging";
    const PATH: &'static str = "imaging";
    const NONE: &'static str = "No imaging studies.";
    const HEADINGS: &'static [&'static str] = &[
        "Study",
        "Date",
        "Status",
        "Body site",
        "Images",
        "By",
        "Study identifier",
    ];
    fn rows(items: &[Self]) -> Markup {
        html! {
            @for s in items {
                tr {
                    td { (s.modality) @if let Some(d) = &s.description { br; small { (d) } } }
                    td { (day(s.started_at)) }
                    td { (s.status.as_str()) }
                    td { (s.body_site.as_deref().unwrap_or("")) }
                    td { (s.instances) " in " (s.series) " series" }
                    td { (s.performer) }
                    td { code { (s.identifier.as_deref().unwrap_or("")) } }
                }
            }
        }
    }
    fn current(&self) -> bool {
        true
    }
}

impl Listed for Report {
    const TITLE: &'static str = "Reports";
    const PATH: &'static str = "reports";
    const NONE: &'static str = "No reports.";
    const HEADINGS: &'static [&'static str] =
        &["Report", "Date", "Status", "Conclusion", "Results", "From"];
    fn rows(items: &[Self]) -> Markup {
        html! {
            @for r in items {
                tr {
                    td { (r.display) @if let Some(c) = &r.category { br; small { (c) } } }
                    td { (day(r.effective_at)) }
                    td { (r.status.as_str()) }
                    td { (r.conclusion.as_deref().unwrap_or("")) }
                    td { (r.results.join(", ")) }
                    td { (r.performer) }
                }
            }
        }
    }
    fn current(&self) -> bool {
        true
    }
}
