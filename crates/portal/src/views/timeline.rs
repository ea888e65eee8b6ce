//! One timeline of the whole record, newest first: every dated entry of every part the viewer
//! may see, each linking to the page of its kind.

use maud::{html, Markup};
use records_domain::model::{
    Allergy, Contact, Diagnosis, ImagingStudy, LabResult, Prescription, Procedure, Report,
    TreatmentPlan, Vaccination,
};
use time::OffsetDateTime;

use super::components::day;

pub struct Entry {
    pub at: OffsetDateTime,
    pub kind: &'static str,
    pub text: String,
    /// The page of the kind, under `/me`.
    pub page: &'static str,
}

/// What a part of the record contributes to the timeline.
pub trait OnTimeline {
    fn entry(&self) -> Option<Entry>;
}

fn entry(at: OffsetDateTime, kind: &'static str, text: String, page: &'static str) -> Entry {
    Entry {
        at,
        kind,
        text,
        page,
    }
}

impl OnTimeline for LabResult {
    fn entry(&self) -> Option<Entry> {
        let text = format!(
            "{}: {} {}",
            self.display,
            self.value,
            self.unit.as_deref().unwrap_or("")
        );
        Some(entry(
            self.effective_at,
            "Lab result",
            text.trim_end().to_string(),
            "labs",
        ))
    }
}

impl OnTimeline for Prescription {
    fn entry(&self) -> Option<Entry> {
        let text = format!("{} prescribed by {}", self.medication_name, self.prescriber);
        Some(entry(
            self.authored_at,
            "Prescription",
            text,
            "prescriptions",
        ))
    }
}

impl OnTimeline for TreatmentPlan {
    fn entry(&self) -> Option<Entry> {
        let at = self.period_start.midnight().assume_utc();
        Some(entry(at, "Treatment plan", self.title.clone(), "plans"))
    }
}

impl OnTimeline for Diagnosis {
    fn entry(&self) -> Option<Entry> {
        let at = self.onset_at.or(self.recorded_at)?;
        Some(entry(at, "Diagnosis", self.display.clone(), "diagnoses"))
    }
}

impl OnTimeline for Allergy {
    fn entry(&self) -> Option<Entry> {
        let text = format!("Allergy to {}", self.substance);
        Some(entry(self.recorded_at?, "Allergy", text, "allergies"))
    }
}

impl OnTimeline for Vaccination {
    fn entry(&self) -> Option<Entry> {
        let text = self.vaccine_name.clone();
        Some(entry(self.occurred_at, "Vaccination", text, "vaccinations"))
    }
}

impl OnTimeline for Contact {
    fn entry(&self) -> Option<Entry> {
        let text = format!("{} at {}", self.type_display, self.place);
        Some(entry(self.started_at, self.class_text(), text, "contacts"))
    }
}

impl OnTimeline for Procedure {
    fn entry(&self) -> Option<Entry> {
        Some(entry(
            self.performed_at,
            "Procedure",
            self.display.clone(),
            "procedures",
        ))
    }
}

impl OnTimeline for Report {
    fn entry(&self) -> Option<Entry> {
        Some(entry(
            self.effective_at,
            "Report",
            self.display.clone(),
            "reports",
        ))
    }
}

impl OnTimeline for ImagingStudy {
    fn entry(&self) -> Option<Entry> {
        let text = match &self.body_site {
            Some(site) => format!("{} of {site}", self.modality),
            None => self.modality.clone(),
        };
        Some(entry(self.started_at, "Imaging", text, "imaging"))
    }
}

/// Newest first.
pub fn sorted(mut entries: Vec<Entry>) -> Vec<Entry> {
    entries.sort_by_key(|e| std::cmp::Reverse(e.at));
    entries
}

pub fn list(entries: &[Entry]) -> Markup {
    html! {
        @if entries.is_empty() { p.hint { "Nothing recorded yet." } } @else {
            ol.timeline {
                @for e in entries {
                    li {
                        time datetime=(day(e.at)) { (day(e.at)) }
                        " · " strong { (e.kind) } " · "
                        a href={ "/me/" (e.page) } { (e.text) }
                    }
                }
            }
        }
    }
}
