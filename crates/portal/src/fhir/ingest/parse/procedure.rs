//! Procedure: what was done, when, by whom and why.

use records_domain::model::{PatientId, Procedure, ProcedureStatus, Source};
use serde_json::Value;
use uuid::Uuid;

use super::{
    coding, invalid, parse_instant, reason, responsible, status_unless_in_error, IngestError,
    ResolveReference,
};

/// `None` for a procedure entered in error.
pub fn parse_procedure(
    r: &Value,
    batch: &impl ResolveReference,
    patient: PatientId,
    source: &Source,
    location: &str,
) -> Result<Option<Procedure>, IngestError> {
    let Some(status) = status_unless_in_error(r, location, ProcedureStatus::parse)? else {
        return Ok(None);
    };
    let (code_system, code, display) = coding(&r["code"])
        .ok_or_else(|| invalid(location, "Procedure needs a code with a coding"))?;
    let performed_at = parse_instant(&r["performedDateTime"], location, "performedDateTime")?
        .or(parse_instant(
            &r["performedPeriod"]["start"],
            location,
            "performedPeriod.start",
        )?)
        .ok_or_else(|| invalid(location, "Procedure.performed[x] is required"))?;
    Ok(Some(Procedure {
        id: Uuid::now_v7(),
        patient_id: patient,
        code_system,
        code,
        display,
        status,
        performed_at,
        performed_until: parse_instant(
            &r["performedPeriod"]["end"],
            location,
            "performedPeriod.end",
        )?,
        performer: responsible(r, batch, &["performer"]).unwrap_or_else(|| "Unknown".into()),
        reason: reason(r, batch),
        version: 1,
        source: source.clone(),
    }))
}
