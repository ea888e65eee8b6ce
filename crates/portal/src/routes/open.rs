//! One way for a page to open a record: the gate decides and audits the access, and a read comes
//! with the banner that names whose record it is. Patients and clinicians open records alike; what
//! differs is said once, when the `Opener` is made: who views (for the banner) and what a refusal
//! becomes for them (`OnRefusal`).

use access_control::{
    AccessError, Actor, Audited, Denial, ReadGrant, RenewalGrant, Request, WriteGrant,
};
use records_domain::model::{LabResult, PatientId};
use records_domain::store::{labs, Category};
use sqlx::AnyConnection;

use crate::app::AppState;
use crate::auth::{set_signed_in, CurrentUser};
use crate::error::{AppError, AppResult};
use crate::routes::banner::{banner, Viewer};
use crate::views::layout::RecordBanner;

/// Lab codes (LOINC and local ones) are far shorter; a longer one is not worth a query.
const MAX_LAB_CODE_LEN: usize = 64;

/// What a refusal becomes, beyond the refusal page.
#[derive(Debug, Clone, Copy)]
enum OnRefusal {
    /// A proxy that ended while the user was viewing through it (revoked, expired, the child
    /// turned 15) sends them back to their own record instead of a refusal on every page.
    ClearEndedProxy,
    /// A refusal the clinician may override becomes the page that offers the override.
    OfferOverride,
}

/// How the gate is asked for a read.
#[derive(Debug, Clone, Copy)]
enum Read {
    Summary,
    Category(Category),
    /// In a write transaction, for a page that records something of the user's own.
    ToRecord(Category),
}

/// One user about to open one patient's record.
pub struct Opener<'a> {
    state: &'a AppState,
    user: &'a CurrentUser,
    patient: PatientId,
    viewer: Viewer,
    on_refusal: OnRefusal,
}

impl<'a> Opener<'a> {
    /// The record on the citizen's screen: the one they switched to as a proxy, or their own.
    pub fn citizen(state: &'a AppState, user: &'a CurrentUser) -> AppResult<Self> {
        let patient = user
            .signed_in
            .acting_for
            .or(user.user.patient_id)
            .ok_or_else(AppError::not_found)?;
        Ok(Self {
            state,
            user,
            patient,
            viewer: Viewer::Citizen,
            on_refusal: OnRefusal::ClearEndedProxy,
        })
    }

    /// The record of the patient the clinician named.
    pub fn clinician(state: &'a AppState, user: &'a CurrentUser, patient: PatientId) -> Self {
        Self {
            state,
            user,
            patient,
            viewer: Viewer::Clinician {
                user_id: user.user.id,
            },
            on_refusal: OnRefusal::OfferOverride,
        }
    }

    /// The gate's request for this user and record.
    pub fn request<'r>(&'r self, actor: &'r Actor, resource_id: Option<String>) -> Request<'r> {
        Request {
            actor,
            ctx: &self.user.ctx,
            patient: self.patient,
            resource_id,
        }
    }

    /// The overview: every category the grant covers.
    pub async fn summary(&self) -> AppResult<(Audited<ReadGrant>, RecordBanner)> {
        self.read_page(Read::Summary, None).await
    }

    /// One category, or with `resource_id` one thing in it (a lab code, a plan).
    pub async fn read(
        &self,
        category: Category,
        resource_id: Option<String>,
    ) -> AppResult<(Audited<ReadGrant>, RecordBanner)> {
        self.read_page(Read::Category(category), resource_id).await
    }

    /// As `read`, with what `fetch` reads in the same audited transaction, committed before the
    /// page is drawn.
    pub async fn read_with<T, E>(
        &self,
        category: Category,
        resource_id: Option<String>,
        fetch: impl AsyncFnOnce(&mut AnyConnection, &ReadGrant) -> Result<T, E>,
    ) -> AppResult<(RecordBanner, T)>
    where
        AppError: From<E>,
    {
        let (mut record, banner) = self.read(category, resource_id).await?;
        let (conn, grant) = record.parts();
        let found = fetch(conn, grant).await?;
        record.commit().await?;
        Ok((banner, found))
    }

    /// The history of one lab test, for the patient's and the clinician's page alike. A code
    /// longer than any real one, or one with no results, is not found, as an unknown id would be.
    pub async fn lab_history(&self, code: &str) -> AppResult<(RecordBanner, Vec<LabResult>)> {
        if code.len() > MAX_LAB_CODE_LEN {
            return Err(AppError::not_found());
        }
        let (banner, history) = self
            .read_with(
                Category::LabResults,
                Some(code.to_string()),
                async |conn, grant| labs::history(conn, grant, code).await,
            )
            .await?;
        if history.is_empty() {
            return Err(AppError::not_found());
        }
        Ok((banner, history))
    }

    /// As `read`, in a write transaction, for a page that records something of the user's own
    /// (a report about an access).
    pub async fn read_to_record(
        &self,
        category: Category,
        resource_id: Option<String>,
    ) -> AppResult<(Audited<ReadGrant>, RecordBanner)> {
        self.read_page(Read::ToRecord(category), resource_id).await
    }

    /// A change to one category.
    pub async fn write(
        &self,
        category: Category,
        resource_id: Option<String>,
    ) -> AppResult<Audited<WriteGrant>> {
        let actor = self.user.actor();
        let req = self.request(&actor, resource_id);
        match self.state.gate().write(&req, category).await {
            Ok(record) => Ok(record),
            Err(e) => Err(self.refused(e).await),
        }
    }

    /// As `write`, making the change with `make` in the same audited transaction and committing.
    pub async fn write_with<T, E>(
        &self,
        category: Category,
        resource_id: Option<String>,
        make: impl AsyncFnOnce(&mut AnyConnection, &WriteGrant) -> Result<T, E>,
    ) -> AppResult<T>
    where
        AppError: From<E>,
    {
        let mut record = self.write(category, resource_id).await?;
        let (conn, grant) = record.parts();
        let made = make(conn, grant).await?;
        record.commit().await?;
        Ok(made)
    }

    /// A request to renew one of the record's prescriptions, made with `make` in the same
    /// audited transaction and committed.
    pub async fn request_renewal_with<T, E>(
        &self,
        prescription: uuid::Uuid,
        make: impl AsyncFnOnce(&mut AnyConnection, &RenewalGrant) -> Result<T, E>,
    ) -> AppResult<T>
    where
        AppError: From<E>,
    {
        let actor = self.user.actor();
        let req = self.request(&actor, Some(prescription.to_string()));
        let mut record = match self.state.gate().request_renewal(&req).await {
            Ok(record) => record,
            Err(e) => return Err(self.refused(e).await),
        };
        let (conn, grant) = record.parts();
        let made = make(conn, grant).await?;
        record.commit().await?;
        Ok(made)
    }

    async fn read_page(
        &self,
        how: Read,
        resource_id: Option<String>,
    ) -> AppResult<(Audited<ReadGrant>, RecordBanner)> {
        let mut record = match self.decide_read(how, resource_id).await {
            Ok(record) => record,
            Err(e) => return Err(self.refused(e).await),
        };
        let (conn, grant) = record.parts();
        let banner = banner(conn, self.viewer, self.patient, grant.basis()).await?;
        Ok((record, banner))
    }

    async fn decide_read(
        &self,
        how: Read,
        resource_id: Option<String>,
    ) -> Result<Audited<ReadGrant>, AccessError> {
        let actor = self.user.actor();
        let req = self.request(&actor, resource_id);
        let gate = self.state.gate();
        match how {
            Read::Summary => gate.summary(&req).await,
            Read::Category(category) => gate.read(&req, category).await,
            Read::ToRecord(category) => gate.read_to_record(&req, category).await,
        }
    }

    async fn refused(&self, error: AccessError) -> AppError {
        match (self.on_refusal, error) {
            (OnRefusal::OfferOverride, AccessError::Denied(denial))
                if denial.override_possible() =>
            {
                AppError::OverrideOffered {
                    denial,
                    patient: self.patient,
                }
            }
            (
                OnRefusal::ClearEndedProxy,
                AccessError::Denied(Denial::NotYourRecord | Denial::ChildTurned15),
            ) if self.user.signed_in.acting_for.is_some() => self.clear_proxy().await,
            (_, other) => other.into(),
        }
    }

    async fn clear_proxy(&self) -> AppError {
        let mut signed_in = self.user.signed_in.clone();
        signed_in.acting_for = None;
        match set_signed_in(&self.user.session, &signed_in).await {
            Ok(()) => AppError::ProxyEnded,
            Err(e) => e,
        }
    }
}
