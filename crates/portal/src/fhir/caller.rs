//! Who is calling the FHIR API: the bearer token is looked up once per request and becomes the
//! actor every decision and audit event names; the token's SMART scopes narrow that actor per
//! resource (`require`) before the access policy is asked.

use access_control::accounts;
use access_control::audit::{self, NewEvent, Outcome};
use access_control::tokens::{self, ApiToken};
use access_control::{Actor, Reach, Request, RequestContext};
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use records_domain::model::PatientId;
use uuid::Uuid;

use super::{anonymous, FhirError, FhirResult};
use crate::app::AppState;
use crate::auth::client_context;

/// The caller of a FHIR request: a live bearer token and who it acts as. `actor` is the token's
/// user (or system client) until `require` narrows it to what the scope for the resource at
/// hand allows.
pub struct FhirCaller {
    pub token: ApiToken,
    pub(super) user: Option<Actor>,
    pub actor: Actor,
    pub ctx: RequestContext,
}

impl FromRequestParts<AppState> for FhirCaller {
    type Rejection = FhirError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, FhirError> {
        let ctx = client_context(parts, state);
        let secret = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let mut conn = state.db.pool().acquire().await?;
        let token = match secret {
            Some(s) if !s.is_empty() => tokens::find(&mut conn, s).await?,
            _ => None,
        };
        let Some(token) = token else {
            drop(conn);
            return Err(anonymous::refuse(state, &ctx).await);
        };
        let user = match token.user_id {
            Some(user_id) => Some(
                accounts::by_id(&mut conn, user_id)
                    .await?
                    .filter(|u| !u.disabled)
                    .map(|u| u.actor())
                    .ok_or(FhirError::Unauthenticated("the token's user is disabled"))?,
            ),
            None => None,
        };
        let actor = user.clone().unwrap_or_else(|| {
            Actor::system(
                token.id,
                format!("system client {}", token.name),
                Reach::WholeRole,
            )
        });
        Ok(Self {
            token,
            user,
            actor,
            ctx,
        })
    }
}

pub(super) async fn audit_system(state: &AppState, event: NewEvent) -> Result<(), FhirError> {
    let mut tx = state.db.begin_write().await?;
    audit::append(&mut tx, event).await?;
    tx.commit().await?;
    Ok(())
}

impl FhirCaller {
    /// Scope check, which also sets who the caller acts as for this resource (a `patient/`
    /// scope confines a user to their own record); a refusal is audited and answered 403.
    pub(super) async fn require(
        &mut self,
        state: &AppState,
        resource: &str,
        write: bool,
    ) -> FhirResult<()> {
        if let Some(actor) = self.token.actor(self.user.clone(), resource, write) {
            self.actor = actor;
            return Ok(());
        }
        let what = if write { "write" } else { "read" };
        audit_system(
            state,
            NewEvent::by(&self.actor, &self.ctx, "fhir scope check", Outcome::Denied)
                .resource(resource, None)
                .reason(format!(
                    "token {} has no {what} scope for {resource}",
                    self.token.name
                )),
        )
        .await?;
        Err(FhirError::Forbidden(format!(
            "the token's scopes do not allow {what} of {resource}"
        )))
    }

    pub(super) fn request(&self, patient: PatientId, resource_id: Option<String>) -> Request<'_> {
        Request {
            actor: &self.actor,
            ctx: &self.ctx,
            patient,
            resource_id,
        }
    }

    /// The patient a search is about: given, or the caller's own record for patient tokens.
    pub(super) fn patient_or_own(&self, given: Option<Uuid>) -> FhirResult<PatientId> {
        given
            .map(PatientId)
            .or(self.actor.patient_id)
            .ok_or_else(|| FhirError::malformed("search parameter patient is required"))
    }
}
