//! FHIR JSON into domain values, with no database: each parser takes one resource and says
//! what is wrong with it and where (`Bundle.entry[3]: ...`). Shared here: the shape of a
//! Bundle, references between its entries, and the FHIR data types every resource uses.

mod allergy;
mod care_plan;
mod condition;
mod encounter;
mod imaging;
mod immunization;
mod medication;
mod observation;
mod patient;
mod procedure;
mod report;

use std::collections::HashMap;

use records_domain::DomainError;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime};

pub use allergy::parse_allergy;
pub use care_plan::parse_care_plan;
pub use condition::parse_condition;
pub use encounter::parse_encounter;
pub use imaging::parse_imaging_study;
pub use immunization::parse_immunization;
pub use medication::parse_medication_request;
pub use observation::parse_observation;
pub use patient::parse_patient;
pub use procedure::parse_procedure;
pub use report::parse_report;

/// Why a resource could not be used, and where it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {problem}")]
pub struct IngestError {
    pub location: String,
    pub problem: String,
}

pub(in crate::fhir::ingest) fn invalid(location: &str, problem: impl Into<String>) -> IngestError {
    IngestError {
        location: location.to_string(),
        problem: problem.into(),
    }
}

/// Resources of one Bundle (or one NDJSON chunk), indexed so references between them resolve.
pub struct Batch<'a> {
    pub(super) entries: Vec<(String, &'a Value)>,
    /// fullUrl or `Type/id` -> position in `entries`
    by_reference: HashMap<String, usize>,
}

impl<'a> Batch<'a> {
    pub fn new(entries: Vec<(String, &'a Value)>, full_urls: &[Option<&'a str>]) -> Self {
        let mut by_reference = HashMap::new();
        for (position, ((_, resource), full_url)) in entries.iter().zip(full_urls).enumerate() {
            if let Some(url) = full_url {
                by_reference.insert(url.to_string(), position);
            }
            if let (Some(kind), Some(id)) =
                (resource["resourceType"].as_str(), resource["id"].as_str())
            {
                by_reference.insert(format!("{kind}/{id}"), position);
            }
        }
        Self {
            entries,
            by_reference,
        }
    }

    pub(super) fn position_of(&self, reference: &Value) -> Option<usize> {
        reference["reference"]
            .as_str()
            .and_then(|r| self.by_reference.get(r).copied())
    }

    fn resolve(&self, reference: &Value) -> Option<&'a Value> {
        self.position_of(reference)
            .and_then(|i| self.entries.get(i))
            .map(|(_, r)| *r)
    }
}

/// A Bundle's resources with their positions (`Bundle.entry[3]`), and their fullUrls.
pub type Entries<'a> = (Vec<(String, &'a Value)>, Vec<Option<&'a str>>);

/// The entries of a Bundle with their positions, after checking its shape.
pub fn bundle_entries(bundle: &Value) -> Result<Entries<'_>, IngestError> {
    if bundle["resourceType"] != "Bundle" {
        return Err(invalid("Bundle", "resourceType must be Bundle"));
    }
    let kind = bundle["type"].as_str().unwrap_or_default();
    if !matches!(kind, "transaction" | "batch" | "collection" | "searchset") {
        return Err(invalid(
            "Bundle.type",
            format!("{kind:?} bundles are not accepted (use transaction)"),
        ));
    }
    let entries = bundle["entry"]
        .as_array()
        .ok_or_else(|| invalid("Bundle.entry", "missing"))?;
    let mut resources = Vec::with_capacity(entries.len());
    let mut urls = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let resource = &entry["resource"];
        if !resource.is_object() {
            return Err(invalid(
                &format!("Bundle.entry[{i}]"),
                "entry without a resource",
            ));
        }
        resources.push((format!("Bundle.entry[{i}]"), resource));
        urls.push(entry["fullUrl"].as_str());
    }
    Ok((resources, urls))
}

/// Resolving references to other resources of the same Bundle (none for single resources).
pub trait ResolveReference {
    fn resolve_ref(&self, reference: &Value) -> Option<&Value>;
}

impl ResolveReference for Batch<'_> {
    fn resolve_ref(&self, reference: &Value) -> Option<&Value> {
        self.resolve(reference)
    }
}

/// A single resource sent on its own: references cannot point into a Bundle.
pub struct NoBundle;

impl ResolveReference for NoBundle {
    fn resolve_ref(&self, _: &Value) -> Option<&Value> {
        None
    }
}

fn text(v: &Value) -> Option<&str> {
    v.as_str().map(str::trim).filter(|s| !s.is_empty())
}

fn parse_instant(
    v: &Value,
    location: &str,
    field: &str,
) -> Result<Option<OffsetDateTime>, IngestError> {
    let Some(s) = text(v) else { return Ok(None) };
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(Some(t));
    }
    parse_date(s)
        .map(|d| Some(d.midnight().assume_utc()))
        .map_err(|_| invalid(location, format!("{field}: {s:?} is not a FHIR dateTime")))
}

pub fn parse_date(s: &str) -> Result<Date, DomainError> {
    records_domain::db::parse_date(s.get(..10).unwrap_or(s))
}

/// The `status` of a resource whose status codes are `S`'s; `None` when it was entered in error,
/// which the portal does not keep.
fn status_unless_in_error<S>(
    r: &Value,
    location: &str,
    parse: impl Fn(&str) -> Result<S, DomainError>,
) -> Result<Option<S>, IngestError> {
    let kind = r["resourceType"].as_str().unwrap_or("resource");
    match r["status"].as_str() {
        Some("entered-in-error") => Ok(None),
        Some(code) => parse(code).map(Some).map_err(|_| {
            invalid(
                location,
                format!("{kind}.status {code:?} is not a known status"),
            )
        }),
        None => Err(invalid(location, format!("{kind}.status is required"))),
    }
}

/// Code system, code and display of the first coding of a CodeableConcept.
fn coding(concept: &Value) -> Option<(String, String, String)> {
    let c = &concept["coding"][0];
    let code = text(&c["code"])?;
    let display = text(&c["display"])
        .or_else(|| text(&concept["text"]))
        .unwrap_or(code);
    Some((
        text(&c["system"]).unwrap_or("").to_string(),
        code.to_string(),
        display.to_string(),
    ))
}

/// Who is responsible for a resource, by name: the first of `fields` (a reference, or a list
/// of references, of `{actor}` or of `{individual}`) that names someone, or else the clinician or organisation of
/// the encounter it was made in. Names come from the reference's display or from the
/// Practitioner or Organization in the same Bundle.
fn responsible(r: &Value, batch: &impl ResolveReference, fields: &[&str]) -> Option<String> {
    let named = |reference: &Value| {
        let reference = ["actor", "individual"]
            .into_iter()
            .map(|wrapper| &reference[wrapper])
            .find(|inner| inner.is_object())
            .unwrap_or(reference);
        text(&reference["display"]).map(str::to_string).or_else(|| {
            let who = batch.resolve_ref(reference)?;
            practitioner_name(who).or_else(|| text(&who["name"]).map(str::to_string))
        })
    };
    let first_named = |field: &Value| match field.as_array() {
        Some(list) => list.iter().find_map(named),
        None => named(field),
    };
    fields.iter().find_map(|f| first_named(&r[*f])).or_else(|| {
        let encounter = batch.resolve_ref(&r["encounter"])?;
        encounter["participant"]
            .as_array()
            .and_then(|p| p.iter().find_map(|p| named(&p["individual"])))
            .or_else(|| named(&encounter["serviceProvider"]))
    })
}

/// Why: the first reason code, or the diagnosis the first reason reference points at.
fn reason(r: &Value, batch: &impl ResolveReference) -> Option<String> {
    coding(&r["reasonCode"][0]).map(|c| c.2).or_else(|| {
        batch
            .resolve_ref(&r["reasonReference"][0])
            .and_then(|found| coding(&found["code"]))
            .map(|c| c.2)
    })
}

fn practitioner_name(p: &Value) -> Option<String> {
    let name = &p["name"][0];
    let given: Vec<&str> = name["given"]
        .as_array()
        .map(|g| g.iter().filter_map(text).collect())
        .unwrap_or_default();
    let family = text(&name["family"])?;
    let prefix = name["prefix"][0]
        .as_str()
        .map(|p| format!("{p} "))
        .unwrap_or_default();
    Some(format!("{prefix}{} {family}", given.join(" ")).replace("  ", " "))
}

#[cfg(test)]
fn test_source() -> records_domain::model::Source {
    records_domain::model::Source {
        system: "urn:test".into(),
        id: "1".into(),
    }
}
