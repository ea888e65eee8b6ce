//! Treatment relationships beyond the GP listing, and the emergency override ("break the
//! glass"): time-limited access with a written reason, always queued for auditor review.

use records_domain::db::{IsoDate, PortableQuery, Statement, Utc, UuidText};
use records_domain::model::PatientId;
use records_domain::{Db, DomainError};
use sqlx::AnyConnection;
use time::{Date, Duration, OffsetDateTime};
use uuid::Uuid;

use crate::actor::{Actor, RequestContext, Role};
use crate::audit::{self, query, NewEvent, Outcome};
use crate::AccessError;

pub const MIN_OVERRIDE_REASON: usize = 20;
pub const MIN_OVERRIDE_WORDS: usize = 3;
const MAX_OVERRIDE_REASON: usize = 1000;

/// The written reason for breaking the glass. The auditor reviewing the override and the
/// patient reading their log must learn something from it, so it has to be words, not a
/// formality that fills the field. The rule, checked here and nowhere else:
/// - at least 20 and at most 1000 characters (leading and trailing space not counted), and
/// - at least three different words, where a word is a run of two or more letters (any
///   alphabet: "Æblemost" counts) that is not one letter repeated ("aaaa", "xx").
///
/// So "aaaaaaaaaaaaaaaaaaaa" and "test test test test test" are refused, and
/// "Unconscious in A&E, need medication list" is accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverrideReason(String);

impl OverrideReason {
    pub const RULE: &'static str = "Describe the emergency in at least 20 characters and at least three different words (for example: \"Unconscious in A&E, need medication list\").";

    pub fn parse(text: &str) -> Result<Self, AccessError> {
        let text = text.trim();
        let length = text.chars().count();
        if length > MAX_OVERRIDE_REASON {
            return Err(AccessError::invalid(format!(
                "The reason can be at most {MAX_OVERRIDE_REASON} characters."
            )));
        }
        if length < MIN_OVERRIDE_REASON || Self::words(text) < MIN_OVERRIDE_WORDS {
            return Err(AccessError::invalid(Self::RULE));
        }
        Ok(Self(text.to_string()))
    }

    /// How many different words (case-insensitive) the text holds, as the rule counts them.
    fn words(text: &str) -> usize {
        let mut words: Vec<String> = text
            .split(|c: char| !c.is_alphabetic())
            .map(str::to_lowercase)
            .filter(|w| {
                let mut letters = w.chars();
                let first = letters.next();
                w.chars().count() >= 2 && letters.any(|c| Some(c) != first)
            })
            .collect();
        words.sort();
        words.dedup();
        words.len()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

const PATIENT_EXISTS: &str = "SELECT id FROM patients WHERE id = $1";
const INSERT_OVERRIDE: &str =
    "INSERT INTO emergency_accesses (id, clinician_id, patient_id, reason, \
     granted_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)";
const COUNT_DENIALS_SINCE: &str = "SELECT COUNT(*) FROM audit_events \
     WHERE actor_id = $1 AND patient_id = $2 AND outcome = 'denied' AND occurred_at >= $3";
const ACTIVE_OVERRIDE: &str = "SELECT id, reason, granted_at, expires_at FROM emergency_accesses \
     WHERE clinician_id = $1 AND patient_id = $2 AND expires_at > $3 \
     ORDER BY expires_at DESC LIMIT 1";
const INSERT_RELATIONSHIP: &str = "INSERT INTO care_relationships (id, clinician_id, patient_id, \
     valid_from, valid_until, reason, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)";
const PATIENT_OF_RELATIONSHIP: &str = "SELECT patient_id FROM care_relationships WHERE id = $1";
const END_RELATIONSHIP: &str = "UPDATE care_relationships SET valid_until = $1 \
     WHERE id = $2 AND (valid_until IS NULL OR valid_until > $1)";
const RELATIONSHIPS: &str = "SELECT r.id, r.clinician_id, u.display_name AS clinician_name, \
     r.patient_id, r.valid_from, r.valid_until, r.reason \
     FROM care_relationships r JOIN users u ON u.id = r.clinician_id";
const RELATIONSHIPS_ORDER: &str = " ORDER BY r.created_at DESC LIMIT 500";

pub(crate) fn statements() -> Vec<Statement> {
    let mut all = records_domain::statements!("care": PATIENT_EXISTS, INSERT_OVERRIDE, COUNT_DENIALS_SINCE,
        ACTIVE_OVERRIDE, INSERT_RELATIONSHIP, PATIENT_OF_RELATIONSHIP, END_RELATIONSHIP,
        RELATIONSHIPS);
    let one_clinician = relationships_query(Some(Uuid::nil()));
    all.push(Statement::new(
        "care::relationships of one clinician",
        one_clinician.sql().to_string(),
    ));
    all
}

#[derive(Debug, Clone)]
pub struct EmergencyAccess {
    pub id: Uuid,
    pub reason: String,
    pub granted_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

#[derive(sqlx::FromRow)]
struct OverrideRow {
    id: UuidText,
    reason: String,
    granted_at: Utc,
    expires_at: Utc,
}

impl From<OverrideRow> for EmergencyAccess {
    fn from(row: OverrideRow) -> Self {
        Self {
            id: row.id.0,
            reason: row.reason,
            granted_at: row.granted_at.0,
            expires_at: row.expires_at.0,
        }
    }
}

/// Break the glass for one patient. The reason must be a real sentence (see `OverrideReason`).
pub async fn grant_override(
    db: &Db,
    actor: &Actor,
    ctx: &RequestContext,
    patient: PatientId,
    reason: &str,
    window: Duration,
) -> Result<EmergencyAccess, AccessError> {
    if actor.role != Role::Clinician {
        return Err(AccessError::Denied(
            crate::policy::Denial::NoClinicalAccessForRole,
        ));
    }
    let reason = OverrideReason::parse(reason)?;
    let reason = reason.as_str();
    let mut tx = db.begin_write().await?;
    let exists = sqlx::query(PATIENT_EXISTS)
        .bind(patient)
        .fetch_optional(&mut *tx)
        .await?;
    if exists.is_none() {
        return Err(AccessError::UnknownPatient);
    }
    let now = OffsetDateTime::now_utc();
    let access = EmergencyAccess {
        id: Uuid::now_v7(),
        reason: reason.to_string(),
        granted_at: now,
        expires_at: now + window,
    };
    sqlx::query(INSERT_OVERRIDE)
        .bind(UuidText(access.id))
        .bind(UuidText(actor.user_id))
        .bind(patient)
        .bind(reason)
        .bind(Utc(now))
        .bind(Utc(access.expires_at))
        .execute(&mut *tx)
        .await?;
    let preceded_by_denial =
        recently_denied(&mut tx, actor.user_id, patient, now - Duration::hours(1)).await?;
    let event = audit::append(
        &mut tx,
        NewEvent::by(actor, ctx, "emergency_override", Outcome::Success)
            .about(patient)
            .resource("emergency_access", Some(access.id.to_string()))
            .basis("emergency_override")
            .reason(reason),
    )
    .await?;
    let kind = if preceded_by_denial {
        query::REVIEW_DENIAL_THEN_OVERRIDE
    } else {
        query::REVIEW_OVERRIDE
    };
    query::open_review(&mut tx, event.id, Some(patient), kind, reason).await?;
    tx.commit().await.map_err(DomainError::from)?;
    metrics::counter!("portal_emergency_overrides_total").increment(1);
    Ok(access)
}

async fn recently_denied(
    conn: &mut AnyConnection,
    actor: Uuid,
    patient: PatientId,
    since: OffsetDateTime,
) -> Result<bool, AccessError> {
    let denials: i64 = sqlx::query_scalar(COUNT_DENIALS_SINCE)
        .bind(UuidText(actor))
        .bind(patient)
        .bind(Utc(since))
        .fetch_one(conn)
        .await?;
    Ok(denials > 0)
}

/// The clinician's override for this patient that is still running, if any.
pub async fn active_override(
    conn: &mut AnyConnection,
    clinician: Uuid,
    patient: PatientId,
) -> Result<Option<EmergencyAccess>, AccessError> {
    let row: Option<OverrideRow> = sqlx::query_as(ACTIVE_OVERRIDE)
        .bind(UuidText(clinician))
        .bind(patient)
        .bind(Utc::now())
        .fetch_optional(conn)
        .await?;
    Ok(row.map(EmergencyAccess::from))
}

#[derive(Debug, Clone)]
pub struct CareRelationship {
    pub id: Uuid,
    pub clinician_id: Uuid,
    pub clinician_name: String,
    pub patient_id: PatientId,
    pub valid_from: OffsetDateTime,
    pub valid_until: Option<OffsetDateTime>,
    pub reason: String,
}

#[derive(sqlx::FromRow)]
struct RelationshipRow {
    id: UuidText,
    clinician_id: UuidText,
    clinician_name: String,
    patient_id: PatientId,
    valid_from: Utc,
    valid_until: Option<Utc>,
    reason: String,
}

impl From<RelationshipRow> for CareRelationship {
    fn from(row: RelationshipRow) -> Self {
        Self {
            id: row.id.0,
            clinician_id: row.clinician_id.0,
            clinician_name: row.clinician_name,
            patient_id: row.patient_id,
            valid_from: row.valid_from.0,
            valid_until: row.valid_until.map(OffsetDateTime::from),
            reason: row.reason,
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub async fn add_relationship(
    conn: &mut AnyConnection,
    actor: &Actor,
    ctx: &RequestContext,
    clinician: Uuid,
    patient: PatientId,
    from: Date,
    until: Option<Date>,
    reason: &str,
) -> Result<Uuid, AccessError> {
    if matches!(until, Some(u) if u < from) {
        return Err(AccessError::invalid(
            "A relationship cannot end before it starts.",
        ));
    }
    if reason.trim().is_empty() {
        return Err(AccessError::invalid(
            "Say what the care relationship is for.",
        ));
    }
    let id = insert_relationship(conn, clinician, patient, from, until, reason).await?;
    let detail = format!(
        "clinician {clinician} from {}{}",
        IsoDate(from),
        until
            .map(|u| format!(" until {}", IsoDate(u)))
            .unwrap_or_default()
    );
    audit::append(
        conn,
        NewEvent::by(actor, ctx, "add care relationship", Outcome::Success)
            .about(patient)
            .resource("care_relationship", Some(id.to_string()))
            .reason(detail),
    )
    .await?;
    Ok(id)
}

/// Insert a relationship row without an audit event: for the register import (seed) only.
pub async fn insert_relationship(
    conn: &mut AnyConnection,
    clinician: Uuid,
    patient: PatientId,
    from: Date,
    until: Option<Date>,
    reason: &str,
) -> Result<Uuid, AccessError> {
    let id = Uuid::now_v7();
    sqlx::query(INSERT_RELATIONSHIP)
        .bind(UuidText(id))
        .bind(UuidText(clinician))
        .bind(patient)
        .bind(Utc::start_of(from))
        .bind(until.map(Utc::start_of))
        .bind(reason.trim())
        .bind(Utc::now())
        .execute(conn)
        .await?;
    Ok(id)
}

pub async fn end_relationship(
    conn: &mut AnyConnection,
    actor: &Actor,
    ctx: &RequestContext,
    id: Uuid,
) -> Result<(), AccessError> {
    let patient: PatientId = sqlx::query_scalar(PATIENT_OF_RELATIONSHIP)
        .bind(UuidText(id))
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(AccessError::Domain(DomainError::NotFound))?;
    let ended = sqlx::query(END_RELATIONSHIP)
        .bind(Utc::now())
        .bind(UuidText(id))
        .execute(&mut *conn)
        .await?;
    if ended.rows_affected() == 0 {
        return Err(AccessError::Domain(DomainError::Conflict));
    }
    audit::append(
        conn,
        NewEvent::by(actor, ctx, "end care relationship", Outcome::Success)
            .about(patient)
            .resource("care_relationship", Some(id.to_string())),
    )
    .await?;
    Ok(())
}

pub async fn relationships(
    conn: &mut AnyConnection,
    clinician: Option<Uuid>,
) -> Result<Vec<CareRelationship>, AccessError> {
    let mut query = relationships_query(clinician);
    let rows: Vec<RelationshipRow> = query.build_query_as()?.fetch_all(conn).await?;
    Ok(rows.into_iter().map(CareRelationship::from).collect())
}

/// Everyone's relationships, or one clinician's.
fn relationships_query(clinician: Option<Uuid>) -> PortableQuery<'static> {
    let mut query = PortableQuery::new(RELATIONSHIPS);
    if let Some(clinician) = clinician {
        query.push_bind(" WHERE r.clinician_id = ", UuidText(clinician));
    }
    query.push(RELATIONSHIPS_ORDER);
    query
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_override_reason_must_be_words() {
        for refused in [
            "aaaaaaaaaaaaaaaaaaaa",
            "                    aaaaaaaaaaaaaaaaaaa ",
            "test test test test test",
            "aa bb cc dd ee ff gg hh",
            "a b c d e f g h i j k l m n",
            "x1 y2 z3 12345678901234567",
            "emergency",
            "Need the list now",
        ] {
            let e = OverrideReason::parse(refused).unwrap_err();
            assert!(
                e.to_string().contains("at least 20 characters"),
                "{refused}"
            );
        }
        for accepted in [
            "Unconscious in A&E, need medication list",
            "Bevidstløs på skadestuen, behøver medicinliste",
            "  Chest pain, ECG shows infarction  ",
        ] {
            assert_eq!(
                OverrideReason::parse(accepted).unwrap().as_str(),
                accepted.trim()
            );
        }
        assert!(OverrideReason::parse(&"word ".repeat(300))
            .unwrap_err()
            .to_string()
            .contains("at most 1000"));
    }
}
