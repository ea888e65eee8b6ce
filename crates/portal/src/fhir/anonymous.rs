//! FHIR calls without a valid bearer token. Nobody unauthenticated may make the portal write
//! without bound: such calls are throttled per client address (429 with Retry-After once the
//! burst is spent), and only the first from each address in each minute is written to the
//! audit log, a fsynced append that the caller would otherwise get for free.

use access_control::audit::{NewEvent, Outcome};
use access_control::RequestContext;

use super::caller::audit_system;
use super::FhirError;
use crate::app::AppState;

/// The answer to a call with a missing or unknown bearer token.
pub(super) async fn refuse(state: &AppState, ctx: &RequestContext) -> FhirError {
    let throttled = state.fhir_throttle.attempt(&ctx.client_addr).is_err();
    if throttled {
        metrics::counter!("portal_throttled_total", "limit" => "fhir_unauthenticated").increment(1);
    }
    if state.anonymous_audit.should_record(&ctx.client_addr) {
        let event = NewEvent::anonymous("FHIR client", ctx, "fhir authenticate", Outcome::Failure)
            .reason(
                "missing or unknown bearer token (recorded once a minute per address; \
                 further calls are throttled)",
            );
        if let Err(e) = audit_system(state, event).await {
            return e;
        }
    }
    if throttled {
        return FhirError::Throttled;
    }
    FhirError::Unauthenticated("a valid bearer token is required")
}
