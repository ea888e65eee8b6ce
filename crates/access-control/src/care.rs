//! Treatment relationships beyond the GP listing, and the emergency override ("break the
//! glass"): time-limited access with a written reason, always queued for auditor review.

use records_domain::db::{date_text, ts, RowExt};
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

#[derive(Debug, Clone)]
pub struct EmergencyAccess {
    pub id: Uuid,
    pub reason: String,
    pub granted_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
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
    let exists = sqlx::query("SELECT id FROM patients WHERE id = $1")
        .bind(patient.0.to_string())
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
    sqlx::query(
        "INSERT INTO emergency_accesses (id, clinician_id, patient_id, reason, granted_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(access.id.to_string())
    .bind(actor.user_id.to_string())
    .bind(patient.0.to_string())
    .bind(reason)
    .bind(ts(now))
    .bind(ts(access.expires_at))
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
    Ok(access)
}

async fn recently_denied(
    conn: &mut AnyConnection,
    actor: Uuid,
    patient: PatientId,
    since: OffsetDateTime,
) -> Result<bool, AccessError> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS n FROM audit_events WHERE actor_id = $1 AND patient_id = $2 AND outcome = 'denied' AND occurred_at >= $3",
    )
    .bind(actor.to_string())
    .bind(patient.0.to_string())
    .bind(ts(since))
    .fetch_one(conn)
    .await?;
    Ok(row.int("n")? > 0)
}

/// The clinician's override for this patient that is still running, if any.
pub async fn active_override(
    conn: &mut AnyConnection,
    clinician: Uuid,
    patient: PatientId,
) -> Result<Option<EmergencyAccess>, AccessError> {
    let row = sqlx::query(
        "SELECT * FROM emergency_accesses WHERE clinician_id = $1 AND patient_id = $2 AND expires_at > $3 ORDER BY expires_at DESC LIMIT 1",
    )
    .bind(clinician.to_string())
    .bind(patient.0.to_string())
    .bind(ts(OffsetDateTime::now_utc()))
    .fetch_optional(conn)
    .await?;
    row.map(|r| {
        Ok(EmergencyAccess {
            id: r.uuid("id")?,
            reason: r.text("reason")?,
            granted_at: r.time("granted_at")?,
            expires_at: r.time("expires_at")?,
        })
    })
    .transpose()
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
        date_text(from),
        until
            .map(|u| format!(" until {}", date_text(u)))
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
    sqlx::query(
        "INSERT INTO care_relationships (id, clinician_id, patient_id, valid_from, valid_until, reason, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id.to_string())
    .bind(clinician.to_string())
    .bind(patient.0.to_string())
    .bind(ts(from.midnight().assume_utc()))
    .bind(until.map(|u| ts(u.midnight().assume_utc())))
    .bind(reason.trim())
    .bind(ts(OffsetDateTime::now_utc()))
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
    let row = sqlx::query("SELECT patient_id FROM care_relationships WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(AccessError::Domain(DomainError::NotFound))?;
    let patient = PatientId(row.uuid("patient_id")?);
    let ended = sqlx::query(
        "UPDATE care_relationships SET valid_until = $1 WHERE id = $2 AND (valid_until IS NULL OR valid_until > $1)",
    )
        .bind(ts(OffsetDateTime::now_utc()))
        .bind(id.to_string())
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
    let rows = sqlx::query(
        "SELECT r.*, u.display_name FROM care_relationships r JOIN users u ON u.id = r.clinician_id \
         WHERE ($1 = '' OR r.clinician_id = $1) ORDER BY r.created_at DESC LIMIT 500",
    )
    .bind(clinician.map(|c| c.to_string()).unwrap_or_default())
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(CareRelationship {
                id: r.uuid("id")?,
                clinician_id: r.uuid("clinician_id")?,
                clinician_name: r.text("display_name")?,
                patient_id: PatientId(r.uuid("patient_id")?),
                valid_from: r.time("valid_from")?,
                valid_until: r.opt_time("valid_until")?,
                reason: r.text("reason")?,
            })
        })
        .collect()
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
