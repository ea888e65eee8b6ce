//! FHIR R4 out: records as FHIR JSON resources, search Bundles and the CapabilityStatement.
//! Every resource carries `meta.versionId`, which is also its ETag.

use access_control::audit::AuditEvent;
use records_domain::db::{date_text, ts};
use records_domain::model::*;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::ingest::CPR_SYSTEM;

pub fn instant(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| ts(t))
}

fn meta(version: i64) -> Value {
    json!({ "versionId": version.to_string() })
}

fn subject(patient: PatientId) -> Value {
    json!({ "reference": format!("Patient/{}", patient.0) })
}

pub fn patient(p: &Patient) -> Value {
    let mut identifier = vec![json!({
        "use": "official",
        "system": CPR_SYSTEM,
        "value": p.cpr.digits(),
    })];
    if let Some((system, value)) = p
        .original_identifier
        .as_deref()
        .and_then(|o| o.split_once('|'))
    {
        let mut original = json!({ "use": "secondary", "value": value });
        if !system.is_empty() {
            original["system"] = json!(system);
        }
        identifier.push(original);
    }
    let mut name = json!({ "use": "official", "family": p.family_name });
    let given: Vec<&str> = p.given_name.split_whitespace().collect();
    if !given.is_empty() {
        name["given"] = json!(given);
    }
    json!({
        "resourceType": "Patient",
        "id": p.id.0.to_string(),
        "meta": meta(p.version),
        "identifier": identifier,
        "name": [name],
        "gender": p.sex.as_str(),
        "birthDate": date_text(p.birth_date),
    })
}

fn interpretation_code(i: Interpretation) -> Option<(&'static str, &'static str)> {
    match i {
        Interpretation::Low => Some(("L", "Low")),
        Interpretation::Normal => Some(("N", "Normal")),
        Interpretation::High => Some(("H", "High")),
        Interpretation::Critical => Some(("AA", "Critical abnormal")),
        Interpretation::Unknown => None,
    }
}

/// One Observation; a panel's (`components` not empty) carries the panel's code and its
/// components' values.
pub fn observation(r: &LabResult, components: &[LabResult]) -> Value {
    let status = match r.status {
        ResultStatus::Preliminary => "preliminary",
        ResultStatus::Final => "final",
        ResultStatus::Amended => "amended",
        ResultStatus::Cancelled => "cancelled",
    };
    let code = match (&r.panel, components.is_empty()) {
        (Some(panel), false) => concept(&r.code_system, &panel.code, &panel.display),
        _ => concept(&r.code_system, &r.code, &r.display),
    };
    let mut o = json!({
        "resourceType": "Observation",
        "id": r.id.to_string(),
        "meta": meta(r.version),
        "status": status,
        "category": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": r.category }] }],
        "code": code,
        "subject": subject(r.patient_id),
        "effectiveDateTime": instant(r.effective_at),
        "issued": instant(r.issued_at),
        "performer": [{ "display": r.performing_lab }],
    });
    if let Some((system, value)) = r.identifier.as_deref().and_then(|i| i.split_once('|')) {
        let mut identifier = json!({ "value": value });
        if !system.is_empty() {
            identifier["system"] = json!(system);
        }
        o["identifier"] = json!([identifier]);
    }
    if components.is_empty() {
        measured(&mut o, r);
    } else {
        o["component"] = components
            .iter()
            .map(|c| {
                let mut component = json!({ "code": concept(&c.code_system, &c.code, &c.display) });
                measured(&mut component, c);
                component
            })
            .collect();
    }
    o
}

/// The value, interpretation and reference range of an Observation or of one of its components.
fn measured(o: &mut Value, r: &LabResult) {
    match &r.value {
        LabValue::Numeric(v) => {
            let mut quantity = json!({ "value": v });
            if let Some(unit) = &r.unit {
                quantity["unit"] = json!(unit);
            }
            o["valueQuantity"] = quantity;
        }
        LabValue::Text(t) if !t.is_empty() => o["valueString"] = json!(t),
        LabValue::Text(_) => {
            o["dataAbsentReason"] = json!({ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/data-absent-reason", "code": "unknown" }] })
        }
    }
    if let Some((c, display)) = interpretation_code(r.interpretation) {
        o["interpretation"] = json!([{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": c, "display": display }] }]);
    }
    if r.reference_low.is_some() || r.reference_high.is_some() {
        let mut range = json!({});
        for (key, value) in [("low", r.reference_low), ("high", r.reference_high)] {
            if let Some(v) = value {
                let mut q = json!({ "value": v });
                if let Some(unit) = &r.unit {
                    q["unit"] = json!(unit);
                }
                range[key] = q;
            }
        }
        o["referenceRange"] = json!([range]);
    }
}

pub fn medication_request(p: &Prescription) -> Value {
    let mut coding = json!({ "code": p.medication_code, "display": p.medication_name });
    if !p.medication_system.is_empty() {
        coding["system"] = json!(p.medication_system);
    }
    let mut validity = json!({ "start": date_text(p.valid_from) });
    if let Some(until) = p.valid_until {
        validity["end"] = json!(date_text(until));
    }
    let mut m = json!({
        "resourceType": "MedicationRequest",
        "id": p.id.to_string(),
        "meta": meta(p.version),
        "status": p.status.as_str(),
        "intent": "order",
        "medicationCodeableConcept": { "coding": [coding], "text": p.medication_name },
        "subject": subject(p.patient_id),
        "authoredOn": instant(p.authored_at),
        "requester": { "display": p.prescriber },
        "dosageInstruction": [{ "text": p.dosage_text }],
        "dispenseRequest": { "validityPeriod": validity },
    });
    if let Some(reason) = &p.stop_reason {
        m["statusReason"] = json!({ "text": reason });
    }
    m
}

/// A coding with its system when the sender gave one.
fn concept(system: &str, code: &str, display: &str) -> Value {
    let mut coding = json!({ "code": code, "display": display });
    if !system.is_empty() {
        coding["system"] = json!(system);
    }
    json!({ "coding": [coding], "text": display })
}

fn status_concept(system: &str, code: &str) -> Value {
    json!({ "coding": [{ "system": system, "code": code }] })
}

/// Set `field` to the instant when there is one.
fn set_instant(resource: &mut Value, field: &str, t: Option<OffsetDateTime>) {
    if let Some(t) = t {
        resource[field] = json!(instant(t));
    }
}

pub fn condition(d: &Diagnosis) -> Value {
    let mut c = json!({
        "resourceType": "Condition",
        "id": d.id.to_string(),
        "meta": meta(d.version),
        "clinicalStatus": status_concept("http://terminology.hl7.org/CodeSystem/condition-clinical", d.clinical_status.as_str()),
        "code": concept(&d.code_system, &d.code, &d.display),
        "subject": subject(d.patient_id),
        "recorder": { "display": d.recorder },
    });
    set_instant(&mut c, "onsetDateTime", d.onset_at);
    set_instant(&mut c, "abatementDateTime", d.abated_at);
    set_instant(&mut c, "recordedDate", d.recorded_at);
    c
}

pub fn allergy_intolerance(a: &Allergy) -> Value {
    let mut r = json!({
        "resourceType": "AllergyIntolerance",
        "id": a.id.to_string(),
        "meta": meta(a.version),
        "clinicalStatus": status_concept("http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", a.clinical_status.as_str()),
        "code": concept(&a.code_system, &a.code, &a.substance),
        "patient": subject(a.patient_id),
        "recorder": { "display": a.recorder },
    });
    if let Some(c) = a.criticality {
        r["criticality"] = json!(c.as_str());
    }
    if let Some(category) = &a.category {
        r["category"] = json!([category]);
    }
    if !a.reactions.is_empty() {
        r["reaction"] = a
            .reactions
            .iter()
            .map(|x| {
                let mut reaction = json!({ "manifestation": [{ "text": x.manifestation }] });
                if let Some(s) = &x.severity {
                    reaction["severity"] = json!(s);
                }
                reaction
            })
            .collect();
    }
    set_instant(&mut r, "recordedDate", a.recorded_at);
    r
}

pub fn immunization(v: &Vaccination) -> Value {
    let mut r = json!({
        "resourceType": "Immunization",
        "id": v.id.to_string(),
        "meta": meta(v.version),
        "status": v.status.as_str(),
        "vaccineCode": concept(&v.vaccine_system, &v.vaccine_code, &v.vaccine_name),
        "patient": subject(v.patient_id),
        "occurrenceDateTime": instant(v.occurred_at),
        "performer": [{ "actor": { "display": v.performer } }],
    });
    if let Some(lot) = &v.lot_number {
        r["lotNumber"] = json!(lot);
    }
    if let Some(site) = &v.site {
        r["site"] = json!({ "text": site });
    }
    r
}

fn set_text(resource: &mut Value, field: &str, value: Option<&str>, wrap: fn(&str) -> Value) {
    if let Some(v) = value.filter(|v| !v.is_empty()) {
        resource[field] = wrap(v);
    }
}

fn reason_codes(reason: &str) -> Value {
    json!([{ "text": reason }])
}

pub fn encounter(c: &Contact) -> Value {
    let mut period = json!({ "start": instant(c.started_at) });
    if let Some(end) = c.ended_at {
        period["end"] = json!(instant(end));
    }
    let mut r = json!({
        "resourceType": "Encounter",
        "id": c.id.to_string(),
        "meta": meta(c.version),
        "status": c.status.as_str(),
        "class": { "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": c.class },
        "type": [concept(&c.type_system, &c.type_code, &c.type_display)],
        "subject": subject(c.patient_id),
        "period": period,
        "serviceProvider": { "display": c.place },
    });
    set_text(
        &mut r,
        "participant",
        Some(&c.practitioner),
        |p| json!([{ "individual": { "display": p } }]),
    );
    set_text(&mut r, "reasonCode", c.reason.as_deref(), reason_codes);
    r
}

pub fn procedure(p: &Procedure) -> Value {
    let mut r = json!({
        "resourceType": "Procedure",
        "id": p.id.to_string(),
        "meta": meta(p.version),
        "status": p.status.as_str(),
        "code": concept(&p.code_system, &p.code, &p.display),
        "subject": subject(p.patient_id),
        "performer": [{ "actor": { "display": p.performer } }],
    });
    match p.performed_until {
        Some(end) => {
            r["performedPeriod"] = json!({ "start": instant(p.performed_at), "end": instant(end) })
        }
        None => r["performedDateTime"] = json!(instant(p.performed_at)),
    }
    set_text(&mut r, "reasonCode", p.reason.as_deref(), reason_codes);
    r
}

pub fn imaging_study(s: &ImagingStudy) -> Value {
    let mut r = json!({
        "resourceType": "ImagingStudy",
        "id": s.id.to_string(),
        "meta": meta(s.version),
        "status": s.status.as_str(),
        "subject": subject(s.patient_id),
        "started": instant(s.started_at),
        "numberOfSeries": s.series,
        "numberOfInstances": s.instances,
        "modality": s.modality.split(", ").map(|m| json!({ "display": m })).collect::<Vec<_>>(),
        "interpreter": [{ "display": s.performer }],
    });
    if let Some(uid) = &s.identifier {
        r["identifier"] = json!([{ "system": "urn:dicom:uid", "value": uid }]);
    }
    set_text(&mut r, "description", s.description.as_deref(), |d| {
        json!(d)
    });
    r
}

pub fn diagnostic_report(d: &Report) -> Value {
    let mut r = json!({
        "resourceType": "DiagnosticReport",
        "id": d.id.to_string(),
        "meta": meta(d.version),
        "status": d.status.as_str(),
        "code": concept(&d.code_system, &d.code, &d.display),
        "subject": subject(d.patient_id),
        "effectiveDateTime": instant(d.effective_at),
        "performer": [{ "display": d.performer }],
    });
    set_instant(&mut r, "issued", d.issued_at);
    set_text(
        &mut r,
        "category",
        d.category.as_deref(),
        |c| json!([{ "text": c }]),
    );
    set_text(&mut r, "conclusion", d.conclusion.as_deref(), |c| json!(c));
    if !d.results.is_empty() {
        r["result"] = d
            .results
            .iter()
            .map(|name| json!({ "display": name }))
            .collect();
    }
    r
}

pub fn care_plan(plan: &TreatmentPlan) -> Value {
    let goals: Vec<Value> = plan
        .goals
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let (lifecycle, achievement) = match g.status {
                GoalStatus::Proposed => ("proposed", None),
                GoalStatus::Active => ("active", Some("in-progress")),
                GoalStatus::Achieved => ("completed", Some("achieved")),
                GoalStatus::Cancelled => ("cancelled", None),
            };
            let mut goal = json!({
                "resourceType": "Goal",
                "id": format!("goal{i}"),
                "lifecycleStatus": lifecycle,
                "description": { "text": g.description },
                "subject": subject(plan.patient_id),
            });
            if let Some(a) = achievement {
                goal["achievementStatus"] = json!({ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/goal-achievement", "code": a }] });
            }
            if let Some(t) = &g.target {
                goal["target"] = json!([{ "detailString": t }]);
            }
            goal
        })
        .collect();
    let mut period = json!({ "start": date_text(plan.period_start) });
    if let Some(end) = plan.period_end {
        period["end"] = json!(date_text(end));
    }
    let mut c = json!({
        "resourceType": "CarePlan",
        "id": plan.id.to_string(),
        "meta": meta(plan.version),
        "status": plan.status.as_str(),
        "intent": "plan",
        "title": plan.title,
        "subject": subject(plan.patient_id),
        "period": period,
        "author": { "display": plan.author },
    });
    if !plan.description.is_empty() {
        c["description"] = json!(plan.description);
    }
    if !goals.is_empty() {
        c["goal"] = json!((0..goals.len())
            .map(|i| json!({ "reference": format!("#goal{i}") }))
            .collect::<Vec<_>>());
        c["contained"] = json!(goals);
    }
    if !plan.activities.is_empty() {
        c["activity"] = json!(plan.activities.iter().map(|a| json!({ "detail": { "status": a.status.as_str(), "description": a.description } })).collect::<Vec<_>>());
    }
    c
}

pub fn audit_event(e: &AuditEvent) -> Value {
    let action = if e.action.starts_with("read") || e.action.contains("search") {
        "R"
    } else if e.action.starts_with("write") || e.action.contains("import") {
        "U"
    } else {
        "E"
    };
    let outcome = match e.outcome.as_str() {
        "allowed" | "success" => "0",
        "denied" => "4",
        _ => "8",
    };
    let mut who = json!({ "display": e.actor_name });
    if let Some(id) = e.actor_id {
        who["identifier"] = json!({ "system": "urn:portal:user", "value": id.to_string() });
    }
    let mut event = json!({
        "resourceType": "AuditEvent",
        "id": e.id.to_string(),
        "type": { "system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110110", "display": "Patient Record" },
        "subtype": [{ "system": "urn:portal:audit-action", "code": e.action }],
        "action": action,
        "recorded": e.occurred_at,
        "outcome": outcome,
        "agent": [{
            "type": { "coding": [{ "system": "urn:portal:role", "code": e.actor_role }] },
            "who": who,
            "requestor": true,
            "network": { "address": e.client_addr, "type": "2" },
        }],
        "source": { "observer": { "display": "Patient portal" } },
    });
    let description = [e.basis.as_str(), e.reason.as_str()]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(": ");
    if !description.is_empty() {
        event["outcomeDesc"] = json!(description);
    }
    if let Some(patient) = e.patient_id {
        event["entity"] = json!([{ "what": { "reference": format!("Patient/{patient}") }, "type": { "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1" } }]);
    }
    event
}

/// A searchset Bundle: its matches, what they include, the total and paging links, every URL
/// absolute under `base`.
pub struct Searchset {
    pub self_url: String,
    pub next_url: Option<String>,
    pub total: Option<i64>,
    pub matches: Vec<Value>,
    pub included: Vec<Value>,
}

impl Searchset {
    pub fn bundle(self, base: &str) -> Value {
        let mut links = vec![json!({ "relation": "self", "url": self.self_url })];
        if let Some(next) = self.next_url {
            links.push(json!({ "relation": "next", "url": next }));
        }
        let entry = |resource: Value, mode: &str| {
            let url = format!(
                "{base}/{}/{}",
                resource["resourceType"].as_str().unwrap_or(""),
                resource["id"].as_str().unwrap_or("")
            );
            json!({ "fullUrl": url, "resource": resource, "search": { "mode": mode } })
        };
        let entries: Vec<Value> = self
            .matches
            .into_iter()
            .map(|r| entry(r, "match"))
            .chain(self.included.into_iter().map(|r| entry(r, "include")))
            .collect();
        let mut bundle = json!({ "resourceType": "Bundle", "type": "searchset", "link": links });
        if let Some(total) = self.total {
            bundle["total"] = total.into();
        }
        if !entries.is_empty() {
            bundle["entry"] = entries.into();
        }
        bundle
    }
}

/// The elements FHIR R4 makes mandatory (cardinality 1..) in each type the portal serves;
/// `medication` and `occurrence` stand for their choice types.
fn mandatory(kind: &str) -> &'static [&'static str] {
    match kind {
        "Observation" | "DiagnosticReport" => &["status", "code"],
        "MedicationRequest" => &["status", "intent", "medication", "subject"],
        "CarePlan" => &["status", "intent", "subject"],
        "Condition" | "Procedure" | "ImagingStudy" => &["status", "subject"],
        "AllergyIntolerance" => &["patient"],
        "Immunization" => &["status", "vaccineCode", "patient", "occurrence"],
        "Encounter" => &["status", "class"],
        "AuditEvent" => &["type", "recorded", "agent", "source"],
        _ => &[],
    }
}

/// Only the named top-level elements and the mandatory ones (the specification asks servers
/// to keep those), tagged SUBSETTED so that no client stores the part as the whole.
pub fn subset(resource: &Value, elements: &[String]) -> Value {
    let kind = resource["resourceType"].as_str().unwrap_or_default();
    let required = mandatory(kind);
    let mut kept = serde_json::Map::new();
    if let Some(all) = resource.as_object() {
        for (name, value) in all {
            let mandatory = matches!(name.as_str(), "resourceType" | "id" | "meta")
                || required.iter().any(|r| name.starts_with(r));
            if mandatory || elements.iter().any(|e| e == name) {
                kept.insert(name.clone(), value.clone());
            }
        }
    }
    let mut kept = Value::Object(kept);
    let tag = json!({
        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
        "code": "SUBSETTED",
    });
    match kept["meta"]["tag"].as_array_mut() {
        Some(tags) => tags.push(tag),
        None => kept["meta"]["tag"] = json!([tag]),
    }
    kept
}

pub fn operation_outcome(severity: &str, code: &str, diagnostics: &str) -> Value {
    json!({
        "resourceType": "OperationOutcome",
        "issue": [{ "severity": severity, "code": code, "diagnostics": diagnostics }],
    })
}

/// What this server does, truthfully: the resources, interactions and search parameters below
/// are exactly the routes in `fhir::routes`.
/// `AuditEvent/{id}/$proof`: the event's inclusion proof in the signed transparency log.
fn audit_event_with_proof(mut audit_event: Value) -> Value {
    audit_event["operation"] = json!([{
        "name": "proof",
        "definition": "urn:portal:OperationDefinition:AuditEvent-proof",
        "documentation": "The event's RFC 9162 inclusion proof in the portal's signed transparency log (README: The transparency log), as Parameters: logKey, checkpoint, leafIndex, leaf, inclusionProof, witnessKey.",
    }]);
    audit_event
}

/// What the portal does with each record type besides searching it.
const RECORD: &[&str] = &[
    "read",
    "vread",
    "history-instance",
    "search-type",
    "create",
    "update",
];

pub fn capability_statement(base: &str, token_endpoint: &str) -> Value {
    let search = |params: &[(&str, &str)]| {
        params
            .iter()
            .map(|(name, kind)| json!({ "name": name, "type": kind }))
            .collect::<Vec<_>>()
    };
    let resource = |kind: &str, interactions: &[&str], params: Vec<Value>| {
        json!({
            "type": kind,
            "versioning": "versioned",
            "readHistory": true,
            "updateCreate": false,
            "conditionalCreate": matches!(kind, "Observation" | "ImagingStudy"),
            "conditionalRead": "not-supported",
            "conditionalUpdate": false,
            "conditionalDelete": "not-supported",
            "interaction": interactions.iter().map(|i| json!({ "code": i })).collect::<Vec<_>>(),
            "searchParam": params,
        })
    };
    let paging = [
        ("_count", "number"),
        ("_offset", "number"),
        ("_summary", "special"),
        ("_total", "special"),
        ("_elements", "special"),
    ];
    let with_paging = |own: &[(&str, &str)]| {
        search(&own.iter().chain(paging.iter()).copied().collect::<Vec<_>>())
    };
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-25",
        "publisher": "Patient portal",
        "kind": "instance",
        "software": { "name": "portal", "version": env!("CARGO_PKG_VERSION") },
        "implementation": { "description": "National patient-record portal", "url": base },
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "security": super::smart::security(token_endpoint),
            "resource": [
                resource("Patient", &["read", "search-type"], with_paging(&[("_id", "token"), ("identifier", "token"), ("name", "string"), ("birthdate", "date"), ("_revinclude", "special")])),
                resource("Observation", RECORD, with_paging(&[("patient", "reference"), ("code", "token"), ("identifier", "token"), ("date", "date"), ("category", "token"), ("_lastUpdated", "date"), ("_sort", "special"), ("_include", "special")])),
                resource("MedicationRequest", RECORD, with_paging(&[("patient", "reference"), ("status", "token"), ("_lastUpdated", "date"), ("_include", "special")])),
                resource("CarePlan", RECORD, with_paging(&[("patient", "reference"), ("status", "token"), ("_lastUpdated", "date"), ("_include", "special")])),
                resource("Condition", RECORD, with_paging(&[("patient", "reference"), ("status", "token"), ("_lastUpdated", "date"), ("_include", "special")])),
                resource("AllergyIntolerance", RECORD, with_paging(&[("patient", "reference"), ("status", "token"), ("_lastUpdated", "date"), ("_include", "special")])),
                resource("Immunization", RECORD, with_paging(&[("patient", "reference"), ("status", "token"), ("_lastUpdated", "date"), ("_include", "special")])),
                resource("Encounter", RECORD, with_paging(&[("patient", "reference"), ("status", "token"), ("_lastUpdated", "date"), ("_include", "special")])),
                resource("Procedure", RECORD, with_paging(&[("patient", "reference"), ("status", "token"), ("_lastUpdated", "date"), ("_include", "special")])),
                resource("DiagnosticReport", RECORD, with_paging(&[("patient", "reference"), ("status", "token"), ("_lastUpdated", "date"), ("_include", "special")])),
                resource("ImagingStudy", RECORD, with_paging(&[("patient", "reference"), ("status", "token"), ("identifier", "token"), ("_lastUpdated", "date"), ("_include", "special")])),
                audit_event_with_proof(resource("AuditEvent", &["search-type"], with_paging(&[("patient", "reference"), ("agent", "reference"), ("date", "date")]))),
            ],
            "interaction": [{ "code": "transaction" }, { "code": "batch" }],
            "operation": [{
                "name": "everything",
                "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
            }],
        }],
    })
}
