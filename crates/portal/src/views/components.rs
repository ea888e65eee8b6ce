//! Pieces several pages share: result flags and tables, the trend chart, prescriptions and plans.

use maud::{html, Markup};
use records_domain::db::date_text;
use records_domain::model::{
    trim_float, Interpretation, LabResult, Prescription, PrescriptionStatus, TreatmentPlan,
};
use time::OffsetDateTime;

pub use super::clock::{day, minute};

pub fn flag(i: Interpretation) -> Markup {
    let (class, text) = match i {
        Interpretation::Low => ("flag low", "Low"),
        Interpretation::Normal => ("flag normal", "Normal"),
        Interpretation::High => ("flag high", "High"),
        Interpretation::Critical => ("flag critical", "Critical"),
        Interpretation::Unknown => ("flag unknown", "No range"),
    };
    html! { span class=(class) { (text) } }
}

/// Latest result per test, newest first, with a link to each test's history.
pub fn lab_table(results: &[LabResult], history_base: &str, show_release: bool) -> Markup {
    html! {
        div.table-wrap tabindex="0" role="region" aria-label="Table, scrolls sideways on small screens" {
            table {
                caption.visually-hidden { "Lab results" }
                thead { tr { th scope="col" { "Test" } th scope="col" { "Value" } th scope="col" { "Reference range" } th scope="col" { "Flag" } th scope="col" { "Taken" } @if show_release { th scope="col" { "Visible to patient" } } } }
                tbody {
                    @for r in results {
                        tr {
                            td { a href={ (history_base) "/" (r.code) } { (r.display) } }
                            td.num { (r.value) " " (r.unit.as_deref().unwrap_or("")) }
                            td.num { (r.reference_range()) }
                            td { (flag(r.interpretation)) }
                            td { (day(r.effective_at)) }
                            @if show_release {
                                td { @if r.is_released(OffsetDateTime::now_utc()) { "Yes" } @else { strong { "Held back" } } }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The newest result of each test, in the order of `results` (newest first).
pub fn latest_per_test(results: &[LabResult]) -> Vec<LabResult> {
    let mut seen = std::collections::HashSet::new();
    results
        .iter()
        .filter(|r| seen.insert(r.code.clone()))
        .cloned()
        .collect()
}

/// A trend chart of one test (oldest to newest) with the reference range as a band.
pub fn trend_chart(results: &[LabResult]) -> Markup {
    let points: Vec<(OffsetDateTime, f64)> = results
        .iter()
        .filter_map(|r| r.numeric_value().map(|v| (r.effective_at, v)))
        .collect();
    let Some(first) = results.first() else {
        return html! {};
    };
    if points.len() < 2 {
        return html! { p.hint { "A chart needs at least two numeric results." } };
    }
    let (w, h, left, right, top, bottom) = (640.0, 260.0, 56.0, 16.0, 16.0, 36.0);
    let low = first.reference_low;
    let high = first.reference_high;
    let values = points.iter().map(|p| p.1).chain(low).chain(high);
    let (mut min_v, mut max_v) =
        values.fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    let pad = ((max_v - min_v) * 0.1).max(0.1);
    min_v -= pad;
    max_v += pad;
    let t0 = points[0].0.unix_timestamp() as f64;
    let t1 = points[points.len() - 1].0.unix_timestamp() as f64;
    let span = (t1 - t0).max(1.0);
    let x = |t: OffsetDateTime| left + (t.unix_timestamp() as f64 - t0) / span * (w - left - right);
    let y = |v: f64| top + (max_v - v) / (max_v - min_v) * (h - top - bottom);
    let line: String = points
        .iter()
        .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
        .collect::<Vec<_>>()
        .join(" ");
    let unit = first.unit.clone().unwrap_or_default();
    let label = format!(
        "Trend of {} from {} to {}: {} results, newest {} {}. Reference range {} {}.",
        first.display,
        day(points[0].0),
        day(points[points.len() - 1].0),
        points.len(),
        trim_float(points[points.len() - 1].1),
        unit,
        first.reference_range(),
        unit
    );
    let band = match (low, high) {
        (Some(l), Some(hh)) => Some((y(hh), y(l))),
        (Some(l), None) => Some((top, y(l))),
        (None, Some(hh)) => Some((y(hh), h - bottom)),
        (None, None) => None,
    };
    html! {
        figure.chart {
            svg viewBox={ "0 0 " (w) " " (h) } role="img" aria-label=(label) xmlns="http://www.w3.org/2000/svg" {
                @if let Some((band_top, band_bottom)) = band {
                    rect.band x=(left) y=(format!("{band_top:.1}")) width=(w - left - right) height=(format!("{:.1}", (band_bottom - band_top).max(0.0))) {}
                }
                line.axis x1=(left) y1=(h - bottom) x2=(w - right) y2=(h - bottom) {}
                line.axis x1=(left) y1=(top) x2=(left) y2=(h - bottom) {}
                text.tick x=(left - 6.0) y=(format!("{:.1}", y(max_v - pad) + 4.0)) text-anchor="end" { (trim_float(max_v - pad)) }
                text.tick x=(left - 6.0) y=(format!("{:.1}", y(min_v + pad) + 4.0)) text-anchor="end" { (trim_float(min_v + pad)) }
                text.tick x=(left) y=(h - 12.0) { (day(points[0].0)) }
                text.tick x=(w - right) y=(h - 12.0) text-anchor="end" { (day(points[points.len() - 1].0)) }
                polyline.trend points=(line) {}
                @for (r, (t, v)) in results.iter().filter(|r| r.numeric_value().is_some()).zip(points.iter()) {
                    circle class={ "point " (r.interpretation.as_str()) } cx=(format!("{:.1}", x(*t))) cy=(format!("{:.1}", y(*v))) r="4" {
                        title { (day(*t)) ": " (trim_float(*v)) " " (unit) " (" (r.interpretation.as_str()) ")" }
                    }
                }
            }
            figcaption { "Shaded band: reference range " (first.reference_range()) " " (unit) "." }
        }
    }
}

pub fn history_table(results: &[LabResult]) -> Markup {
    html! {
        div.table-wrap tabindex="0" role="region" aria-label="Table, scrolls sideways on small screens" {
            table {
                caption { "All results, newest first" }
                thead { tr { th scope="col" { "Taken" } th scope="col" { "Value" } th scope="col" { "Reference range" } th scope="col" { "Flag" } th scope="col" { "Status" } th scope="col" { "Laboratory" } } }
                tbody {
                    @for r in results.iter().rev() {
                        tr {
                            td { (minute(r.effective_at)) }
                            td.num { (r.value) " " (r.unit.as_deref().unwrap_or("")) }
                            td.num { (r.reference_range()) }
                            td { (flag(r.interpretation)) }
                            td { (r.status.as_str()) }
                            td { (r.performing_lab) }
                        }
                    }
                }
            }
        }
    }
}

pub fn prescription_table(items: &[Prescription], caption: &str) -> Markup {
    html! {
        @if items.is_empty() { p.hint { "None." } } @else {
            div.table-wrap tabindex="0" role="region" aria-label="Table, scrolls sideways on small screens" {
                table {
                    caption { (caption) }
                    thead { tr { th scope="col" { "Medicine" } th scope="col" { "ATC" } th scope="col" { "Dosage" } th scope="col" { "Status" } th scope="col" { "From" } th scope="col" { "Until" } th scope="col" { "Prescriber" } } }
                    tbody {
                        @for p in items {
                            tr {
                                td { (p.medication_name) }
                                td { code { (p.medication_code) } }
                                td { (p.dosage_text) }
                                td { (p.status.as_str()) @if let Some(reason) = &p.stop_reason { br; small { "Reason: " (reason) } } }
                                td { (date_text(p.valid_from)) }
                                td { (p.valid_until.map(date_text).unwrap_or_default()) }
                                td { (p.prescriber) }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub fn split_prescriptions(all: Vec<Prescription>) -> (Vec<Prescription>, Vec<Prescription>) {
    all.into_iter()
        .partition(|p| p.status == PrescriptionStatus::Active)
}

pub fn plan_card(plan: &TreatmentPlan, actions: Markup) -> Markup {
    html! {
        article.card.plan {
            h3 { (plan.title) }
            p.meta { "Status: " strong { (plan.status.as_str()) } " · from " (date_text(plan.period_start)) @if let Some(end) = plan.period_end { " to " (date_text(end)) } " · by " (plan.author) " · version " (plan.version) }
            @if !plan.description.is_empty() { p { (plan.description) } }
            @if !plan.goals.is_empty() {
                h4 { "Goals" }
                ul { @for g in &plan.goals { li { (g.description) @if let Some(t) = &g.target { " (target: " (t) ")" } " — " em { (g.status.as_str()) } } } }
            }
            @if !plan.activities.is_empty() {
                h4 { "Activities" }
                ul { @for a in &plan.activities { li { (a.description) " — " em { (a.status.as_str()) } } } }
            }
            (actions)
        }
    }
}
