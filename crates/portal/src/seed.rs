//! The demo: the deterministic population from `records_domain::demo`, the register facts
//! around it (guardianships, a power of attorney, a care relationship) and one login per role.

use access_control::accounts::{self, NewUser};
use access_control::audit::writer::AuditWriter;
use access_control::consent;
use access_control::policy::ProxyKind;
use access_control::{
    Actor, BatchGrants, Gate, PolicySettings, Reach, Refusal, Request, RequestContext, Role,
};
use records_domain::demo::{self, named};
use records_domain::model::{PatientId, Source};
use records_domain::store::kept::{self, Kept};
use records_domain::store::{clinics, labs, patients, plans, prescriptions, Category};
use records_domain::Db;

use crate::fhir::{resources, versions};
use sha2::{Digest, Sha256};
use time::macros::date;
use uuid::Uuid;

/// A demo user as printed at start: `demo login: <role> <username> <password> [totp=<secret>]`.
#[derive(Debug, Clone)]
pub struct DemoLogin {
    pub role: Role,
    pub username: &'static str,
    pub display_name: &'static str,
    pub password: &'static str,
    pub totp: Option<String>,
}

impl std::fmt::Display for DemoLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "demo login: {} {} {}",
            self.role, self.username, self.password
        )?;
        if let Some(secret) = &self.totp {
            write!(f, " totp={secret}")?;
        }
        Ok(())
    }
}

/// Demo TOTP secrets are derived from the user name, so they are the same on every machine.
fn demo_totp(username: &str) -> String {
    let digest = Sha256::digest(format!("portal demo totp {username}").as_bytes());
    totp_rs::Secret::Raw(digest[..20].to_vec())
        .to_encoded()
        .to_string()
}

pub fn demo_logins() -> Vec<DemoLogin> {
    let staff = |role, username, display_name, password| DemoLogin {
        role,
        username,
        display_name,
        password,
        totp: Some(demo_totp(username)),
    };
    let citizen = |username, display_name, password| DemoLogin {
        role: Role::Patient,
        username,
        display_name,
        password,
        totp: None,
    };
    vec![
        citizen("anne", "Anne Jensen", "anne-demo-2026"),
        citizen("bo", "Bo Nielsen", "bo-demo-2026!"),
        citizen("karen", "Karen Poulsen", "karen-demo-2026"),
        staff(
            Role::Clinician,
            "dr.hansen",
            "Dr. Mette Hansen",
            "hansen-demo-2026",
        ),
        staff(
            Role::Clinician,
            "dr.larsen",
            "Dr. Jens Larsen",
            "larsen-demo-2026",
        ),
        staff(Role::Auditor, "auditor", "Ida Revisor", "auditor-demo-2026"),
        staff(
            Role::Administrator,
            "admin",
            "Søren Admin",
            "admin-demo-2026",
        ),
    ]
}

#[derive(Debug, Default)]
pub struct SeedReport {
    pub created: bool,
    pub patients: usize,
    pub lab_results: usize,
    pub prescriptions: usize,
    pub plans: usize,
}

/// The demo population's records go in as any source system's do: each write decided and
/// audited, here as the population register's.
async fn write_records(
    db: &Db,
    tx: &mut sqlx::AnyConnection,
    pop: &demo::Population,
) -> anyhow::Result<()> {
    let settings = PolicySettings::default();
    let audit = AuditWriter::start(db).await?;
    let gate = Gate {
        db,
        settings: &settings,
        audit: &audit,
    };
    let register = Actor::system(
        Uuid::nil(),
        "demo population register",
        Reach::PopulationRegister,
    );
    let ctx = RequestContext {
        client_addr: "command line".into(),
    };
    let request = |patient| Request {
        actor: &register,
        ctx: &ctx,
        patient,
        resource_id: None,
    };
    let refused = |r: Refusal| anyhow::anyhow!("demo data refused: {}", r.denial.describe());
    for p in &pop.patients {
        let source = Source {
            system: demo::DEMO_SOURCE.into(),
            id: p.id.0.to_string(),
        };
        let grant = gate
            .authorize_register(tx, &request(p.id), p.birth_date, demo::DEMO_SOURCE)
            .await?
            .map_err(refused)?;
        patients::upsert(tx, &grant, p, None, &source).await?;
        seeded(tx, p.id, resources::patient(p)).await?;
    }
    let mut grants = BatchGrants::default();
    for r in &pop.lab_results {
        let req = request(r.patient_id);
        let grant = grants
            .write(&gate, tx, &req, Category::LabResults, demo::DEMO_SOURCE)
            .await?
            .map_err(refused)?;
        labs::upsert(tx, grant, r).await?;
        seeded(tx, r.patient_id, resources::observation(r, &[])).await?;
    }
    for r in &pop.prescriptions {
        let req = request(r.patient_id);
        let grant = grants
            .write(&gate, tx, &req, Category::Prescriptions, demo::DEMO_SOURCE)
            .await?
            .map_err(refused)?;
        prescriptions::upsert(tx, grant, r).await?;
        seeded(tx, r.patient_id, resources::medication_request(r)).await?;
    }
    for plan in &pop.plans {
        let req = request(plan.patient_id);
        let grant = grants
            .write(&gate, tx, &req, Category::TreatmentPlans, demo::DEMO_SOURCE)
            .await?
            .map_err(refused)?;
        plans::upsert(tx, grant, plan).await?;
        seeded(tx, plan.patient_id, resources::care_plan(plan)).await?;
    }
    let mut new_kinds = KeptWriter {
        gate: &gate,
        grants: &mut grants,
        actor: &register,
        ctx: &ctx,
    };
    new_kinds
        .write_all(tx, &pop.diagnoses, resources::condition)
        .await?;
    new_kinds
        .write_all(tx, &pop.allergies, resources::allergy_intolerance)
        .await?;
    new_kinds
        .write_all(tx, &pop.vaccinations, resources::immunization)
        .await?;
    new_kinds
        .write_all(tx, &pop.contacts, resources::encounter)
        .await?;
    new_kinds
        .write_all(tx, &pop.procedures, resources::procedure)
        .await?;
    new_kinds
        .write_all(tx, &pop.reports, resources::diagnostic_report)
        .await?;
    new_kinds
        .write_all(tx, &pop.imaging, resources::imaging_study)
        .await?;
    // Its connection closed before seeding returns, so the seeded database can be copied.
    audit.close().await;
    Ok(())
}

/// Writes diagnoses, allergies or vaccinations as the register, each decided and audited.
struct KeptWriter<'a> {
    gate: &'a Gate<'a>,
    grants: &'a mut BatchGrants,
    actor: &'a Actor,
    ctx: &'a RequestContext,
}

impl KeptWriter<'_> {
    async fn write_all<T: Kept>(
        &mut self,
        tx: &mut sqlx::AnyConnection,
        items: &[T],
        render: fn(&T) -> serde_json::Value,
    ) -> anyhow::Result<()> {
        for item in items {
            let request = Request {
                actor: self.actor,
                ctx: self.ctx,
                patient: item.patient_id(),
                resource_id: None,
            };
            let grant = self
                .grants
                .write(self.gate, tx, &request, T::CATEGORY, demo::DEMO_SOURCE)
                .await?
                .map_err(|r| anyhow::anyhow!("demo data refused: {}", r.denial.describe()))?;
            kept::upsert(tx, grant, item).await?;
            seeded(tx, item.patient_id(), render(item)).await?;
        }
        Ok(())
    }
}

/// The demo data's first versions, kept as FHIR would have served them when seeded, so that
/// they carry `meta.lastUpdated` like everything written through FHIR.
async fn seeded(
    tx: &mut sqlx::AnyConnection,
    patient: PatientId,
    resource: serde_json::Value,
) -> anyhow::Result<()> {
    let now = time::OffsetDateTime::now_utc();
    let resource = versions::stamped(resource, now);
    versions::record(tx, patient, now, &resource).await?;
    Ok(())
}

/// Create the demo population unless the database already has users.
pub async fn seed(db: &Db) -> anyhow::Result<SeedReport> {
    let mut tx = db.begin_write().await?;
    if !accounts::all(&mut tx).await?.is_empty() {
        return Ok(SeedReport::default());
    }
    let pop = demo::generate();
    for clinic in &pop.clinics {
        clinics::insert(&mut tx, clinic).await?;
    }
    write_records(db, &mut tx, &pop).await?;
    let hashes = hash_demo_passwords().await?;
    let (clinic_a, clinic_b) = (pop.clinics[0].id, pop.clinics[1].id);
    let mut ids = std::collections::HashMap::new();
    for (login, hash) in demo_logins().iter().zip(&hashes) {
        let patient_id = match login.username {
            "anne" => Some(pop.patients[named::ANNE].id),
            "bo" => Some(pop.patients[named::BO].id),
            "karen" => Some(pop.patients[named::KAREN].id),
            _ => None,
        };
        let clinic_id = match login.username {
            "dr.hansen" => Some(clinic_a),
            "dr.larsen" => Some(clinic_b),
            _ => None,
        };
        let new = NewUser {
            username: login.username.into(),
            display_name: login.display_name.into(),
            role: login.role,
            patient_id,
            clinic_id,
            totp_secret: login.totp.clone(),
            must_change_password: false,
        };
        ids.insert(login.username, accounts::create(&mut tx, &new, hash).await?);
    }
    // Other guardians exist as citizens without a demo password (they would sign in with MitID).
    let unusable = hashes.last().cloned().unwrap_or_default();
    let mut guardian_users: std::collections::HashMap<PatientId, Uuid> =
        std::collections::HashMap::new();
    guardian_users.insert(pop.patients[named::ANNE].id, ids["anne"]);
    for (guardian, child) in &pop.guardianships {
        let user = match guardian_users.get(guardian) {
            Some(u) => *u,
            None => {
                let person = pop
                    .patients
                    .iter()
                    .find(|p| p.id == *guardian)
                    .ok_or_else(|| anyhow::anyhow!("guardian missing"))?;
                let new = NewUser {
                    username: format!("citizen-{}", &guardian.0.simple().to_string()[..12]),
                    display_name: person.full_name(),
                    role: Role::Patient,
                    patient_id: Some(*guardian),
                    clinic_id: None,
                    totp_secret: None,
                    must_change_password: true,
                };
                let id = accounts::create(&mut tx, &new, &unusable).await?;
                guardian_users.insert(*guardian, id);
                id
            }
        };
        let child_birth = pop
            .patients
            .iter()
            .find(|p| p.id == *child)
            .map(|p| p.birth_date)
            .unwrap_or(date!(2020 - 01 - 01));
        consent::insert_proxy(
            &mut tx,
            *child,
            user,
            ProxyKind::Guardian,
            child_birth,
            None,
        )
        .await?;
    }
    let karen = pop.patients[named::KAREN].id;
    consent::insert_proxy(
        &mut tx,
        karen,
        ids["bo"],
        ProxyKind::PowerOfAttorney,
        date!(2026 - 01 - 01),
        Some(date!(2028 - 01 - 01)),
    )
    .await?;
    access_control::care::insert_relationship(
        &mut tx,
        ids["dr.larsen"],
        karen,
        date!(2026 - 06 - 01),
        None,
        "Home visits after hip surgery",
    )
    .await?;
    tx.commit().await?;
    Ok(SeedReport {
        created: true,
        patients: pop.patients.len(),
        lab_results: pop.lab_results.len(),
        prescriptions: pop.prescriptions.len(),
        plans: pop.plans.len(),
    })
}

/// The demo passwords' hashes, plus one of a random password for citizens without a demo login.
async fn hash_demo_passwords() -> anyhow::Result<Vec<String>> {
    let mut passwords: Vec<String> = demo_logins()
        .iter()
        .map(|l| l.password.to_string())
        .collect();
    passwords.push(Uuid::new_v4().to_string());
    let handles: Vec<_> = passwords
        .into_iter()
        .map(|p| tokio::task::spawn_blocking(move || accounts::hash_password(&p)))
        .collect();
    let mut hashes = Vec::new();
    for h in handles {
        hashes.push(h.await??);
    }
    Ok(hashes)
}
