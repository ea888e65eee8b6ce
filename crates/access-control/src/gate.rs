//! The one way to a patient's data: load the facts, `decide`, append the audit event and hand
//! back the transaction together with a grant, which the record store demands as its permit.
//! A denial is audited and committed before the caller hears of it; an allowed access is only
//! audited if the caller's transaction commits, so what was not audited was not shown.
//!
//! Pages take one decision per request (`Gate::read`, `Gate::write`, ...), each opening its
//! transaction. A Bundle or an import writes for many patients in one transaction, so it asks
//! inside that transaction (`Gate::authorize_write`, `Gate::authorize_register`); a refusal
//! there comes back as a `Refusal`, which the caller records with `Gate::record_refusal` after
//! rolling its transaction back: the refusal is durable, nothing of the batch is.

use std::collections::hash_map::{Entry, HashMap};

use records_domain::db::{IsoDate, Statement, TextColumn, Utc, UuidText};
use records_domain::model::PatientId;
use records_domain::model::Source;
use records_domain::store::{Category, ReadPermit, RegisterPermit, WritePermit};
use records_domain::{Db, DomainError, Tx};
use sqlx::AnyConnection;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::actor::{Actor, RequestContext, Role};
use crate::audit::writer::AuditWriter;
use crate::audit::{self, NewEvent, Outcome};
use crate::audited::Audited;
use crate::policy::{
    decide, Action, Basis, BlockFact, Decision, Denial, Facts, Period, PolicySettings, ProxyFact,
    ProxyKind,
};
use crate::AccessError;

/// Permission to read parts of one patient's record, within one transaction.
#[derive(Debug)]
pub struct ReadGrant {
    patient: PatientId,
    basis: Basis,
    categories: Vec<Category>,
    role: Role,
    /// The sequence number of this access's own event in the patient's chain.
    event_seq: i64,
}

impl ReadGrant {
    pub fn event_seq(&self) -> i64 {
        self.event_seq
    }
    pub fn basis(&self) -> Basis {
        self.basis
    }
    pub fn patient(&self) -> PatientId {
        self.patient
    }
}

impl ReadPermit for ReadGrant {
    fn patient_id(&self) -> PatientId {
        self.patient
    }
    fn includes_unreleased(&self) -> bool {
        self.role == Role::Clinician
    }
    fn covers(&self, category: Category) -> bool {
        self.categories.contains(&category)
    }
}

/// Permission to change one category of one patient's record, within one transaction, under
/// the writer's own source namespace.
#[derive(Debug)]
pub struct WriteGrant {
    read: ReadGrant,
    author: String,
    source_system: String,
}

impl WriteGrant {
    pub fn basis(&self) -> Basis {
        self.read.basis
    }
    pub fn patient(&self) -> PatientId {
        self.read.patient
    }
}

impl ReadPermit for WriteGrant {
    fn patient_id(&self) -> PatientId {
        self.read.patient
    }
    fn includes_unreleased(&self) -> bool {
        self.read.includes_unreleased()
    }
    fn covers(&self, category: Category) -> bool {
        self.read.covers(category)
    }
}

impl WritePermit for WriteGrant {
    fn author_name(&self) -> &str {
        &self.author
    }
    fn source_system(&self) -> &str {
        &self.source_system
    }
}

/// Permission to register one patient or change their demographics, given only to the
/// population register.
#[derive(Debug)]
pub struct RegisterGrant {
    patient: PatientId,
    source_system: String,
}

impl RegisterPermit for RegisterGrant {
    fn patient_id(&self) -> PatientId {
        self.patient
    }
    fn source_system(&self) -> &str {
        &self.source_system
    }
}

/// A write refused inside a batch: what to tell the caller, and the audit events that must
/// be made durable once the batch's transaction is rolled back.
#[derive(Debug)]
pub struct Refusal {
    pub denial: Denial,
    events: Vec<NewEvent>,
}

/// Permission to change who may see a patient's record (blocks, powers of attorney).
#[derive(Debug)]
pub struct ConsentGrant {
    patient: PatientId,
}

impl ConsentGrant {
    pub fn patient(&self) -> PatientId {
        self.patient
    }
}

/// Permission to ask for the renewal of one patient's prescriptions, given to the patient and
/// to holders of their power of attorney; it grants nothing else.
#[derive(Debug)]
pub struct RenewalGrant {
    patient: PatientId,
    requester_id: Uuid,
    requester_name: String,
}

impl records_domain::store::RenewalPermit for RenewalGrant {
    fn patient_id(&self) -> PatientId {
        self.patient
    }
    fn requester(&self) -> (Uuid, &str) {
        (self.requester_id, &self.requester_name)
    }
}

/// The write grants of one batch: one decision (and one audit event) per patient and category,
/// however many resources the batch holds for them.
#[derive(Debug, Default)]
pub struct BatchGrants {
    grants: HashMap<(PatientId, Category), WriteGrant>,
}

impl BatchGrants {
    pub async fn write(
        &mut self,
        gate: &Gate<'_>,
        conn: &mut AnyConnection,
        req: &Request<'_>,
        category: Category,
        source_system: &str,
    ) -> Result<Result<&WriteGrant, Refusal>, AccessError> {
        Ok(match self.grants.entry((req.patient, category)) {
            Entry::Occupied(e) => Ok(e.into_mut()),
            Entry::Vacant(e) => gate
                .authorize_write(conn, req, category, source_system)
                .await?
                .map(|grant| &*e.insert(grant)),
        })
    }
}

/// What is being accessed, for the decision and the audit event.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub actor: &'a Actor,
    pub ctx: &'a RequestContext,
    pub patient: PatientId,
    /// e.g. the lab code or plan id the page shows; `None` for a whole category.
    pub resource_id: Option<String>,
}

pub struct Gate<'a> {
    pub db: &'a Db,
    pub settings: &'a PolicySettings,
    pub audit: &'a AuditWriter,
}

impl Gate<'_> {
    /// The overview: one decision and one audit event for the parts of the record it covers.
    pub async fn summary(&self, req: &Request<'_>) -> Result<Audited<ReadGrant>, AccessError> {
        let entered = self.enter_read(req, Action::ReadSummary, "summary").await?;
        Ok(entered.read_grant(req))
    }

    /// Who a CPR number names (a lab addressing its result): one decision and one audit
    /// event; the grant covers no part of the record.
    pub async fn identify(&self, req: &Request<'_>) -> Result<Audited<ReadGrant>, AccessError> {
        let entered = self
            .enter_read(req, Action::Identify, "patient identity")
            .await?;
        Ok(entered.read_grant(req))
    }

    pub async fn read(
        &self,
        req: &Request<'_>,
        category: Category,
    ) -> Result<Audited<ReadGrant>, AccessError> {
        let entered = self
            .enter_read(req, Action::Read(category), category.as_str())
            .await?;
        Ok(entered.read_grant(req))
    }

    /// A read whose handler also records something of its own in the same transaction (a
    /// patient's report about an entry of their access log): decided as a read, audited in the
    /// write transaction like a change.
    pub async fn read_to_record(
        &self,
        req: &Request<'_>,
        category: Category,
    ) -> Result<Audited<ReadGrant>, AccessError> {
        let entered = self
            .enter(req, Action::Read(category), category.as_str())
            .await?;
        Ok(entered.read_grant(req))
    }

    pub async fn write(
        &self,
        req: &Request<'_>,
        category: Category,
    ) -> Result<Audited<WriteGrant>, AccessError> {
        let entered = self
            .enter(req, Action::Write(category), category.as_str())
            .await?;
        let (tx, read) = entered.into_parts(req);
        Ok(Audited::new(
            tx,
            WriteGrant {
                read,
                author: req.actor.name.clone(),
                source_system: Source::PORTAL.to_string(),
            },
        ))
    }

    /// A write of one category inside the caller's batch transaction (see the module docs).
    pub async fn authorize_write(
        &self,
        conn: &mut AnyConnection,
        req: &Request<'_>,
        category: Category,
        source_system: &str,
    ) -> Result<Result<WriteGrant, Refusal>, AccessError> {
        let now = OffsetDateTime::now_utc();
        let facts = load_facts(conn, req.actor, req.patient, now).await?.facts;
        let action = Action::Write(category);
        let decision = decide(req.actor, action, &facts, self.settings, now);
        let event = decision_event(req, action, category.as_str(), &decision)
            .reason(source_system_reason(&decision, source_system));
        let (basis, categories) = match decision {
            Decision::Denied(denial) => {
                return Ok(Err(Refusal {
                    denial,
                    events: vec![event],
                }))
            }
            Decision::Allowed { basis, categories } => (basis, categories),
        };
        let stored = audit::append(conn, event).await?;
        Ok(Ok(WriteGrant {
            read: read_grant(req, basis, categories, stored.seq),
            author: req.actor.name.clone(),
            source_system: source_system.to_string(),
        }))
    }

    /// Registering a patient (`req.patient` is the id a new patient will get) or changing who
    /// an existing one is, inside the caller's batch transaction.
    pub async fn authorize_register(
        &self,
        conn: &mut AnyConnection,
        req: &Request<'_>,
        birth_date: Date,
        source_system: &str,
    ) -> Result<Result<RegisterGrant, Refusal>, AccessError> {
        let now = OffsetDateTime::now_utc();
        let facts = match load_facts(conn, req.actor, req.patient, now).await {
            Err(AccessError::UnknownPatient) => Facts::unregistered(req.patient, birth_date),
            other => other?.facts,
        };
        let action = Action::WriteDemographics;
        let decision = decide(req.actor, action, &facts, self.settings, now);
        let event = decision_event(req, action, "patient", &decision)
            .reason(source_system_reason(&decision, source_system));
        if let Decision::Denied(denial) = decision {
            return Ok(Err(Refusal {
                denial,
                events: vec![event],
            }));
        }
        audit::append(conn, event).await?;
        Ok(Ok(RegisterGrant {
            patient: req.patient,
            source_system: source_system.to_string(),
        }))
    }

    /// An update that would move a record from one patient to another: refused, and told in
    /// both patients' logs.
    pub fn refuse_move(&self, req: &Request<'_>, owner: PatientId, resource_type: &str) -> Refusal {
        let denial = Denial::RecordOfAnotherPatient;
        let event = |patient| {
            NewEvent::by(req.actor, req.ctx, "write", Outcome::Denied)
                .about(patient)
                .resource(resource_type, req.resource_id.clone())
                .reason(denial.as_str())
        };
        Refusal {
            denial,
            events: vec![event(req.patient), event(owner)],
        }
    }

    /// Make a batch's refusal durable in a transaction of its own; the caller's batch has been
    /// rolled back. Answers the refusal as the error to return.
    pub async fn record_refusal(&self, refusal: Refusal) -> AccessError {
        match self.append_committed(refusal.events).await {
            Ok(()) => AccessError::Denied(refusal.denial),
            Err(e) => e,
        }
    }

    async fn append_committed(&self, events: Vec<NewEvent>) -> Result<(), AccessError> {
        let mut tx = self.db.begin_write().await?;
        for event in events {
            audit::append(&mut tx, event).await?;
        }
        tx.commit()
            .await
            .map_err(records_domain::DomainError::from)?;
        Ok(())
    }

    pub async fn consent(&self, req: &Request<'_>) -> Result<Audited<ConsentGrant>, AccessError> {
        let entered = self.enter(req, Action::ManageConsent, "consent").await?;
        Ok(Audited::new(
            entered.tx,
            ConsentGrant {
                patient: req.patient,
            },
        ))
    }

    pub async fn request_renewal(
        &self,
        req: &Request<'_>,
    ) -> Result<Audited<RenewalGrant>, AccessError> {
        let entered = self
            .enter(
                req,
                Action::RequestRenewal,
                Category::Prescriptions.as_str(),
            )
            .await?;
        Ok(Audited::new(
            entered.tx,
            RenewalGrant {
                patient: req.patient,
                requester_id: req.actor.user_id,
                requester_name: req.actor.name.clone(),
            },
        ))
    }

    /// Search hits: for each, whether the record could be opened, and an audit event saying
    /// that the clinician learned the patient exists. Nothing of the record is read. The facts
    /// are read on `conn` (a read transaction will do); the events go to the group-committing
    /// writer together, and all are durable before the decisions are returned.
    pub async fn lookup(
        &self,
        conn: &mut AnyConnection,
        hits: &[Request<'_>],
    ) -> Result<Vec<Decision>, AccessError> {
        let now = OffsetDateTime::now_utc();
        let mut decisions = Vec::with_capacity(hits.len());
        let mut events = Vec::with_capacity(hits.len());
        for req in hits {
            let facts = load_facts(conn, req.actor, req.patient, now).await?.facts;
            let decision = decide(req.actor, Action::ReadSummary, &facts, self.settings, now);
            events.push(
                NewEvent::by(req.actor, req.ctx, "lookup", Outcome::Success)
                    .about(req.patient)
                    .resource("patient", None)
                    .basis(decision.basis().map(Basis::as_str).unwrap_or(""))
                    .reason(decision.denial().map(Denial::as_str).unwrap_or("")),
            );
            decisions.push(decision);
        }
        futures::future::try_join_all(events.into_iter().map(|e| self.audit.append(e))).await?;
        Ok(decisions)
    }

    /// A read: decided in a read transaction (many readers at once, also on SQLite), its
    /// event made durable by the group-committing writer before anything of the record is read.
    async fn enter_read(
        &self,
        req: &Request<'_>,
        action: Action,
        resource_type: &str,
    ) -> Result<Entered, AccessError> {
        let mut tx = self.db.begin_read().await?;
        let (decision, event) = self
            .decide_with_event(&mut tx, req, action, resource_type)
            .await?;
        let stored = self.audit.append(event).await?;
        match decision {
            Decision::Denied(denial) => Err(AccessError::Denied(denial)),
            Decision::Allowed { basis, categories } => Ok(Entered {
                tx,
                basis,
                categories,
                event_seq: stored.seq,
            }),
        }
    }

    /// A change: decided and audited in the write transaction that will carry it, so the event
    /// exists exactly if the change does. A denial is committed on its own.
    async fn enter(
        &self,
        req: &Request<'_>,
        action: Action,
        resource_type: &str,
    ) -> Result<Entered, AccessError> {
        let mut tx = self.db.begin_write().await?;
        let (decision, event) = self
            .decide_with_event(&mut tx, req, action, resource_type)
            .await?;
        let stored = audit::append(&mut tx, event).await?;
        match decision {
            Decision::Denied(denial) => {
                tx.commit()
                    .await
                    .map_err(records_domain::DomainError::from)?;
                Err(AccessError::Denied(denial))
            }
            Decision::Allowed { basis, categories } => Ok(Entered {
                tx,
                basis,
                categories,
                event_seq: stored.seq,
            }),
        }
    }

    async fn decide_with_event(
        &self,
        conn: &mut AnyConnection,
        req: &Request<'_>,
        action: Action,
        resource_type: &str,
    ) -> Result<(Decision, NewEvent), AccessError> {
        let now = OffsetDateTime::now_utc();
        let loaded = load_facts(conn, req.actor, req.patient, now).await?;
        let decision = decide(req.actor, action, &loaded.facts, self.settings, now);
        let reason = match &decision {
            Decision::Denied(d) => d.as_str().to_string(),
            Decision::Allowed {
                basis: Basis::EmergencyOverride,
                ..
            } => loaded.override_reason.unwrap_or_default(),
            Decision::Allowed { .. } => String::new(),
        };
        let event = decision_event(req, action, resource_type, &decision).reason(reason);
        Ok((decision, event))
    }
}

/// The audit event of a decision; the caller adds the reason.
fn decision_event(
    req: &Request<'_>,
    action: Action,
    resource_type: &str,
    decision: &Decision,
) -> NewEvent {
    let outcome = if decision.is_allowed() {
        Outcome::Allowed
    } else {
        Outcome::Denied
    };
    let mut event = NewEvent::by(req.actor, req.ctx, &action.describe(), outcome)
        .about(req.patient)
        .resource(resource_type, req.resource_id.clone())
        .basis(decision.basis().map(Basis::as_str).unwrap_or(""));
    if decision.basis().is_some_and(Basis::is_proxy) {
        event.on_behalf_of = Some(req.patient.0.to_string());
    }
    event
}

/// A batch write's event names the source it came from, or why it was refused.
fn source_system_reason(decision: &Decision, source_system: &str) -> String {
    match decision {
        Decision::Denied(d) => d.as_str().to_string(),
        Decision::Allowed { .. } => format!("from {source_system}"),
    }
}

/// What a gate hands out once the decision allowed the access and its event is recorded.
struct Entered {
    tx: Tx,
    basis: Basis,
    categories: Vec<Category>,
    event_seq: i64,
}

impl Entered {
    fn read_grant(self, req: &Request<'_>) -> Audited<ReadGrant> {
        let (tx, grant) = self.into_parts(req);
        Audited::new(tx, grant)
    }

    fn into_parts(self, req: &Request<'_>) -> (Tx, ReadGrant) {
        let grant = read_grant(req, self.basis, self.categories, self.event_seq);
        (self.tx, grant)
    }
}

fn read_grant(
    req: &Request<'_>,
    basis: Basis,
    categories: Vec<Category>,
    event_seq: i64,
) -> ReadGrant {
    ReadGrant {
        patient: req.patient,
        basis,
        categories,
        role: req.actor.role,
        event_seq,
    }
}

/// What the decision is made from, and the reason to repeat if it rests on an override.
pub struct Loaded {
    pub facts: Facts,
    /// The clinician's stated reason for their latest live emergency override, if any: every
    /// access under the override repeats it in its audit event.
    pub override_reason: Option<String>,
}

/// The facts for one decision in one round trip: the patient's row, this actor's proxies,
/// care relationships and live overrides for the patient, and the patient's blocks. Every
/// branch of the UNION yields the same text columns; `kind` says which table a row is from.
const FACTS_SQL: &str = "\
    SELECT 'patient' AS kind, birth_date AS a, gp_clinic_id AS b, NULL AS c, NULL AS d, NULL AS e \
      FROM patients WHERE id = $1 \
    UNION ALL SELECT 'proxy', kind, valid_from, valid_until, revoked_at, NULL \
      FROM proxies WHERE patient_id = $1 AND proxy_user_id = $2 \
    UNION ALL SELECT 'care', valid_from, valid_until, NULL, NULL, NULL \
      FROM care_relationships WHERE patient_id = $1 AND clinician_id = $2 \
    UNION ALL SELECT 'block', clinician_id, clinic_id, valid_from, valid_until, lifted_at \
      FROM blocks WHERE patient_id = $1 \
    UNION ALL SELECT 'override', expires_at, granted_at, reason, NULL, NULL \
      FROM emergency_accesses WHERE patient_id = $1 AND clinician_id = $2 AND expires_at > $3";

pub(crate) fn statements() -> Vec<Statement> {
    records_domain::statements!("gate": FACTS_SQL)
}

/// One row of `FACTS_SQL`: which table it is from, and that table's columns as stored text.
#[derive(sqlx::FromRow)]
struct FactRow {
    kind: String,
    a: Option<String>,
    b: Option<String>,
    c: Option<String>,
    d: Option<String>,
    e: Option<String>,
}

/// A column of the union that its branch always fills.
fn present(text: Option<&str>) -> Result<&str, AccessError> {
    text.ok_or_else(|| DomainError::Corrupt("access fact without a required column".into()).into())
}

/// A column of the union decoded as what its branch stores there.
fn parsed<T: TextColumn>(text: &str) -> Result<T, AccessError> {
    T::from_column(text)
        .map_err(|e| DomainError::Corrupt(format!("access fact {text:?}: {e}")).into())
}

fn required<T: TextColumn>(text: Option<&str>) -> Result<T, AccessError> {
    parsed(present(text)?)
}

fn decoded<T: TextColumn>(text: Option<&str>) -> Result<Option<T>, AccessError> {
    text.map(parsed).transpose()
}

fn id(text: Option<&str>) -> Result<Option<Uuid>, AccessError> {
    Ok(decoded::<UuidText>(text)?.map(Uuid::from))
}

fn period(from: Option<&str>, until: Option<&str>) -> Result<Period, AccessError> {
    Ok(Period {
        from: required::<Utc>(from)?.0,
        until: decoded::<Utc>(until)?.map(OffsetDateTime::from),
    })
}

pub async fn load_facts(
    conn: &mut AnyConnection,
    actor: &Actor,
    patient: PatientId,
    now: OffsetDateTime,
) -> Result<Loaded, AccessError> {
    let rows: Vec<FactRow> = sqlx::query_as(FACTS_SQL)
        .bind(patient)
        .bind(UuidText(actor.user_id))
        .bind(Utc(now))
        .fetch_all(conn)
        .await?;
    let mut patient_row = None;
    let (mut proxies, mut care_relationships, mut blocks) = (Vec::new(), Vec::new(), Vec::new());
    let mut overrides: Vec<(OffsetDateTime, OffsetDateTime, String)> = Vec::new();
    for r in &rows {
        let [a, b, c, d, e] = [&r.a, &r.b, &r.c, &r.d, &r.e].map(|t| t.as_deref());
        match r.kind.as_str() {
            "patient" => {
                let birth_date = required::<IsoDate>(a)?.0;
                patient_row = Some((birth_date, id(b)?));
            }
            "proxy" => proxies.push(ProxyFact {
                kind: required::<ProxyKind>(a)?,
                period: period(b, c)?,
                revoked: d.is_some(),
            }),
            "care" => care_relationships.push(period(a, b)?),
            "block" => blocks.push(BlockFact {
                clinician_id: id(a)?,
                clinic_id: id(b)?,
                period: period(c, d)?,
                lifted: e.is_some(),
            }),
            _ => overrides.push((
                required::<Utc>(a)?.0,
                required::<Utc>(b)?.0,
                present(c)?.to_string(),
            )),
        }
    }
    let (birth_date, gp_clinic_id) = patient_row.ok_or(AccessError::UnknownPatient)?;
    let override_reason = overrides
        .iter()
        .max_by_key(|(_, granted_at, _)| *granted_at)
        .map(|(_, _, reason)| reason.clone());
    Ok(Loaded {
        facts: Facts {
            patient_id: patient,
            birth_date,
            gp_clinic_id,
            proxies,
            care_relationships,
            blocks,
            override_expires_at: overrides
                .iter()
                .map(|(expires_at, _, _)| *expires_at)
                .collect(),
        },
        override_reason,
    })
}
