//! Which patient a resource is about, and registering patients.
//!
//! National IDs: a Patient that carries a CPR identifier (`urn:oid:1.2.208.176.1.2`) keeps it.
//! One that does not (the Synthea samples are American) is assigned one by this rule, so that
//! a re-import assigns the same number: the date part is the birth date; the seventh digit puts
//! the year in the right century (CPR office table); the last three digits are taken from the
//! SHA-256 of the resource's source key, with the last digit's parity following the sex (odd
//! male, even female); on a clash with another person the serial steps by 2. The original
//! identifier is kept (`original_identifier`).

use std::collections::HashMap;

use access_control::Gate;
use records_domain::model::{Patient, PatientId, Sex, Source};
use records_domain::store::{patients, Upserted, Written};
use records_domain::Cpr;
use serde_json::Value;
use sha2::{Digest, Sha256};
use time::Date;
use uuid::Uuid;

use super::apply::{source_of, BatchError};
use super::parse::{invalid, parse_patient, Batch};
use super::{ApplyError, Writer};

pub const CPR_SYSTEM: &str = "urn:oid:1.2.208.176.1.2";

/// A Patient resource names who the other resources are about. Naming a patient the portal
/// holds, exactly as it holds them, changes nothing and needs no permit; registering a patient
/// or changing who they are is for the population register alone.
pub(super) async fn register(
    gate: &Gate<'_>,
    tx: &mut sqlx::AnyConnection,
    writer: &Writer<'_>,
    resource: &Value,
    location: &str,
) -> Result<(Written, Patient), BatchError> {
    let source = source_of(writer, resource, location)?;
    let patient = parse_patient(resource, &source, location)?;
    let (patient, same_as) = if carries_cpr(resource) {
        (patient, patients::SameAs::SourceKeyOrCpr)
    } else {
        let patient = with_free_cpr(tx, patient, &source).await?;
        (patient, patients::SameAs::SourceKeyOnly)
    };
    let current = patients::existing(tx, &patient, &source, same_as).await?;
    if let Some(current) = &current {
        if patients::same_demographics(current, &patient) {
            let written = Written::new(Upserted::Unchanged, current.id.0, current.version);
            return Ok((written, current.clone()));
        }
    }
    let id = current.as_ref().map_or(patient.id, |c| c.id);
    let req = writer.request(id, Some(source.id.clone()));
    let grant = gate
        .authorize_register(tx, &req, patient.birth_date, writer.source_system)
        .await?
        .map_err(BatchError::Refused)?;
    let written = patients::upsert(tx, &grant, &patient, current.as_ref(), &source).await?;
    let stored = Patient {
        id: PatientId(written.id),
        version: written.version,
        gp_clinic_id: current.as_ref().and_then(|c| c.gp_clinic_id),
        ..patient
    };
    Ok((written, stored))
}

pub(super) async fn subject_of(
    conn: &mut sqlx::AnyConnection,
    writer: &Writer<'_>,
    batch: &Batch<'_>,
    patient_ids: &HashMap<usize, PatientId>,
    resource: &Value,
    location: &str,
) -> Result<PatientId, ApplyError> {
    // Immunization and AllergyIntolerance name their patient `patient`, the others `subject`.
    let subject = if resource["subject"].is_null() {
        &resource["patient"]
    } else {
        &resource["subject"]
    };
    if let Some(id) = batch
        .position_of(subject)
        .and_then(|position| patient_ids.get(&position))
    {
        return Ok(*id);
    }
    if let Some(reference) = subject["reference"].as_str() {
        if let Some(id) = reference.strip_prefix("Patient/") {
            if let Ok(uuid) = Uuid::parse_str(id) {
                if patients::by_id(conn, PatientId(uuid)).await?.is_some() {
                    return Ok(PatientId(uuid));
                }
            }
            let source = Source {
                system: writer.source_system.to_string(),
                id: id.to_string(),
            };
            if let Some(p) = patients::by_source(conn, &source).await? {
                return Ok(p.id);
            }
        }
    }
    if subject["identifier"]["system"] == CPR_SYSTEM {
        let cpr = Cpr::parse(subject["identifier"]["value"].as_str().unwrap_or_default())
            .map_err(|e| invalid(location, format!("subject.identifier: {e}")))?;
        if let Some(p) = patients::by_cpr(conn, &cpr).await? {
            return Ok(p.id);
        }
    }
    Err(invalid(location, "subject does not name a known patient (Patient/<id>, a Patient in the same Bundle, or a CPR identifier)").into())
}

/// The documented assignment rule (module docs); `attempt` steps the serial on a clash.
pub fn assigned_cpr(birth: Date, sex: Sex, key: &str, attempt: u16) -> Option<Cpr> {
    let year = birth.year();
    let digest = Sha256::digest(key.as_bytes());
    let seventh = match year {
        1900..=1999 => digest[0] % 4,
        2000..=2036 => 4,
        2037..=2057 => 5 + digest[0] % 4,
        1858..=1899 => 5 + digest[0] % 4,
        _ => return None,
    };
    let base = (u16::from(digest[1]) << 8 | u16::from(digest[2])) % 100;
    let mut last = digest[3] % 10;
    let wants_odd = sex == Sex::Male;
    if sex != Sex::Other && sex != Sex::Unknown && (last % 2 == 1) != wants_odd {
        last = (last + 1) % 10;
    }
    let serial = (base * 10 + u16::from(last) + attempt * 2) % 1000;
    let digits = format!(
        "{:02}{:02}{:02}{}{:03}",
        birth.day(),
        birth.month() as u8,
        year % 100,
        seventh,
        serial
    );
    Cpr::parse(&digits).ok()
}

fn carries_cpr(patient: &Value) -> bool {
    patient["identifier"]
        .as_array()
        .is_some_and(|ids| ids.iter().any(|i| i["system"] == CPR_SYSTEM))
}

/// Keep the assigned CPR unless it belongs to someone else already; then step the serial.
async fn with_free_cpr(
    conn: &mut sqlx::AnyConnection,
    mut patient: Patient,
    source: &Source,
) -> Result<Patient, ApplyError> {
    if let Some(existing) = patients::by_source(conn, source).await? {
        patient.cpr = existing.cpr;
        return Ok(patient);
    }
    let key = format!("{}|{}", source.system, source.id);
    for attempt in 1..=500 {
        match patients::by_cpr(conn, &patient.cpr).await? {
            None => return Ok(patient),
            Some(_) => {
                patient.cpr = assigned_cpr(patient.birth_date, patient.sex, &key, attempt)
                    .ok_or_else(|| invalid(&key, "no free CPR number"))?;
            }
        }
    }
    Err(invalid(&key, "no free CPR number for this birth date").into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn assigned_cpr_is_deterministic_valid_and_follows_sex() {
        let a = assigned_cpr(date!(1982 - 04 - 07), Sex::Male, "urn:x|abc", 0).unwrap();
        assert_eq!(
            a,
            assigned_cpr(date!(1982 - 04 - 07), Sex::Male, "urn:x|abc", 0).unwrap()
        );
        assert_eq!(a.birth_date(), date!(1982 - 04 - 07));
        assert!(a.is_odd());
        let f = assigned_cpr(date!(2010 - 12 - 31), Sex::Female, "urn:x|def", 3).unwrap();
        assert_eq!(f.birth_date(), date!(2010 - 12 - 31));
        assert!(!f.is_odd());
        assert_ne!(
            assigned_cpr(date!(1982 - 04 - 07), Sex::Male, "urn:x|abc", 1),
            Some(a)
        );
        assert!(assigned_cpr(date!(1700 - 01 - 01), Sex::Male, "k", 0).is_none());
    }
}
