//! DiagnosticReport: a lab panel, imaging or pathology report, its conclusion, and the names of
//! the results it groups (their values are imported as Observations).

use records_domain::model::{PatientId, Report, ReportStatus, Source};
use serde_json::Value;
use uuid::Uuid;

use super::{
    coding, invalid, parse_instant, responsible, status_unless_in_error, text, IngestError,
    ResolveReference,
};

/// `None` for a report entered in error.
pub fn parse_report(
    r: &Value,
    batch: &impl ResolveReference,
    patient: PatientId,
    source: &Source,
    location: &str,
) -> Result<Option<Report>, IngestError> {
    let Some(status) = status_unless_in_error(r, location, ReportStatus::parse)? else {
        return Ok(None);
    };
    let (code_system, code, display) = coding(&r["code"])
        .ok_or_else(|| invalid(location, "DiagnosticReport needs a code with a coding"))?;
    let effective_at = parse_instant(&r["effectiveDateTime"], location, "effectiveDateTime")?
        .or(parse_instant(
            &r["effectivePeriod"]["start"],
            location,
            "effectivePeriod.start",
        )?)
        .ok_or_else(|| invalid(location, "DiagnosticReport.effective[x] is required"))?;
    let results = r["result"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|reference| {
            text(&reference["display"]).map(str::to_string).or_else(|| {
                batch
                    .resolve_ref(reference)
                    .and_then(|o| coding(&o["code"]))
                    .map(|c| c.2)
            })
        })
        .collect();
    Ok(Some(Report {
        id: Uuid::now_v7(),
        patient_id: patient,
        code_system,
        code,
        display,
        category: coding(&r["category"][0]).map(|c| c.2),
        status,
        effective_at,
        issued_at: parse_instant(&r["issued"], location, "issued")?,
        performer: responsible(r, batch, &["performer", "resultsInterpreter"])
            .unwrap_or_else(|| "Unknown".into()),
        conclusion: text(&r["conclusion"]).map(str::to_string),
        results,
        version: 1,
        source: source.clone(),
    }))
}
