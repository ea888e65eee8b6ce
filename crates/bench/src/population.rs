//! The synthetic population: clinics with their clinicians, patients listed with a GP clinic,
//! ~30 lab results, 5 prescriptions and a treatment plan each, care relationships, auditors,
//! patient users, and an audit history whose hash chains verify.
//!
//! Everything about patient `i` follows from `i` alone (its own random stream), so chunks of
//! patients can be generated in any order and every run of the same size loads the same people.
//! Identifiers are UUIDv7-shaped and rise with `i` within each table, and source ids are
//! zero-padded, so the rows arrive in index order: the B-trees grow at their right edge.

use std::ops::Range;

use access_control::audit::{AuditEvent, GENESIS_HASH, SYSTEM_CHAIN};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use records_domain::demo::{FAMILY_NAMES, FEMALE_NAMES, LAB_TESTS, MALE_NAMES, MEDICINES, PLANS};
use records_domain::model::Interpretation;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::rows::{days_from_civil, ts_text, Batch, Val};

/// The source system of every loaded record, and the prefix of every loaded user name.
pub const SOURCE: &str = "urn:portal:bench";
/// The one password of every loaded user (hashed once; the users share the hash).
pub const PASSWORD: &str = "bench-password-2026";
const SEED: u64 = 20_261_313;
const DAY_MICROS: i64 = 86_400_000_000;
/// Goal and activity ids are numbered per plan in slots of this many (a test checks the demo
/// plans fit), so that every row's id is derived from its patient alone.
const PLAN_ITEM_SLOTS: u64 = 4;
/// 2026-01-01T00:00:00Z: the time part of every loaded identifier.
const ID_MILLIS: u64 = 1_767_225_600_000;

/// What to load. `Default` is the shape; only `patients` is usually changed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Spec {
    pub patients: u64,
    pub patients_per_clinic: u64,
    /// At least this many clinicians (at least two per clinic): each load connection that
    /// signs in as a clinician needs its own, since a TOTP step is accepted once per user.
    pub min_clinicians: u64,
    pub auditors: u64,
    /// Patients with a portal account (the first ones; they share one password hash).
    pub patient_users: u64,
    pub lab_results_per_patient: u64,
    pub prescriptions_per_patient: u64,
    pub audit_events_per_patient: u64,
    /// Every n-th patient also has a care relationship with a clinician of another clinic.
    pub care_relationship_every: u64,
}

impl Default for Spec {
    fn default() -> Self {
        Self {
            patients: 10_000,
            patients_per_clinic: 1_500,
            min_clinicians: 256,
            auditors: 64,
            patient_users: 5_000,
            lab_results_per_patient: 30,
            prescriptions_per_patient: 5,
            audit_events_per_patient: 3,
            care_relationship_every: 50,
        }
    }
}

impl Spec {
    pub fn clinics(&self) -> u64 {
        self.patients
            .div_ceil(self.patients_per_clinic.max(1))
            .max(1)
    }

    pub fn clinicians(&self) -> u64 {
        self.min_clinicians.max(2 * self.clinics())
    }

    pub fn patient_users(&self) -> u64 {
        self.patient_users.min(self.patients)
    }

    /// Logins of staff in the system chain: ten per staff member.
    pub fn system_events(&self) -> u64 {
        10 * (self.clinicians() + self.auditors)
    }

    pub fn clinic_of_patient(&self, i: u64) -> u64 {
        (i / self.patients_per_clinic.max(1)).min(self.clinics() - 1)
    }

    pub fn clinic_of_clinician(&self, c: u64) -> u64 {
        c % self.clinics()
    }
}

/// Identifier kinds: the second byte of the random part, so each table's ids rise on their own.
#[derive(Clone, Copy)]
#[repr(u8)]
enum Kind {
    Clinic = 1,
    Clinician,
    Auditor,
    Patient,
    PatientUser,
    Lab,
    Prescription,
    Plan,
    Goal,
    Activity,
    Care,
    Audit,
    SystemClient,
}

fn id(kind: Kind, n: u64) -> Uuid {
    let mut bytes = [0u8; 10];
    bytes[1] = kind as u8;
    bytes[3..].copy_from_slice(&n.to_be_bytes()[1..]);
    uuid::Builder::from_unix_timestamp_millis(ID_MILLIS, &bytes).into_uuid()
}

pub fn clinic_id(k: u64) -> Uuid {
    id(Kind::Clinic, k)
}

pub fn patient_id(i: u64) -> Uuid {
    id(Kind::Patient, i)
}

pub fn clinician_username(c: u64) -> String {
    format!("bench-clinician-{c}")
}

pub fn auditor_username(a: u64) -> String {
    format!("bench-auditor-{a}")
}

pub fn patient_username(i: u64) -> String {
    format!("bench-patient-{i}")
}

/// A staff member's TOTP secret (base32), derived from the user name so that the harness
/// knows it without storing it anywhere else.
pub fn totp_secret(username: &str) -> String {
    let digest = Sha256::digest(format!("portal bench totp {username}").as_bytes());
    totp_rs::Secret::Raw(digest[..20].to_vec())
        .to_encoded()
        .to_string()
}

const LABS: &[&str] = &[
    "Klinisk Biokemisk Afdeling, Rigshospitalet",
    "Klinisk Biokemisk Afdeling, Aarhus Universitetshospital",
    "Klinisk Biokemisk Afdeling, Odense Universitetshospital",
];

pub const PATIENT_COLUMNS: &[&str] = &[
    "id",
    "national_id",
    "given_name",
    "family_name",
    "birth_date",
    "sex",
    "gp_clinic_id",
    "source_system",
    "source_id",
    "original_identifier",
    "created_at",
];
const LAB_COLUMNS: &[&str] = &[
    "id",
    "patient_id",
    "code_system",
    "code",
    "display",
    "value_numeric",
    "value_text",
    "unit",
    "reference_low",
    "reference_high",
    "interpretation",
    "status",
    "effective_at",
    "issued_at",
    "performing_lab",
    "released_at",
    "version",
    "source_system",
    "source_id",
    "category",
];
const PRESCRIPTION_COLUMNS: &[&str] = &[
    "id",
    "patient_id",
    "medication_system",
    "medication_code",
    "medication_name",
    "dosage_text",
    "status",
    "authored_at",
    "prescriber",
    "valid_from",
    "valid_until",
    "stop_reason",
    "version",
    "source_system",
    "source_id",
];
const PLAN_COLUMNS: &[&str] = &[
    "id",
    "patient_id",
    "title",
    "description",
    "status",
    "period_start",
    "period_end",
    "author",
    "updated_at",
    "version",
    "source_system",
    "source_id",
];
const GOAL_COLUMNS: &[&str] = &[
    "id",
    "plan_id",
    "position",
    "description",
    "target",
    "status",
];
const ACTIVITY_COLUMNS: &[&str] = &["id", "plan_id", "position", "description", "status"];
const CLINIC_COLUMNS: &[&str] = &["id", "name", "kind", "address", "phone", "created_at"];
const USER_COLUMNS: &[&str] = &[
    "id",
    "username",
    "display_name",
    "password_hash",
    "role",
    "patient_id",
    "clinic_id",
    "totp_secret",
    "must_change_password",
    "created_at",
];
const CARE_COLUMNS: &[&str] = &[
    "id",
    "clinician_id",
    "patient_id",
    "valid_from",
    "valid_until",
    "reason",
    "created_at",
];
const AUDIT_COLUMNS: &[&str] = &[
    "id",
    "chain_key",
    "seq",
    "occurred_at",
    "actor_id",
    "actor_name",
    "actor_role",
    "actor_clinic_id",
    "on_behalf_of",
    "patient_id",
    "action",
    "resource_type",
    "resource_id",
    "basis",
    "outcome",
    "reason",
    "client_addr",
    "prev_hash",
    "hash",
];
const CHAIN_COLUMNS: &[&str] = &["chain_key", "last_seq", "last_hash"];

/// The tables that receive rows per patient. The loader lifts their secondary indexes during
/// the load and builds them once at the end.
pub const BULK_TABLES: &[&str] = &[
    "patients",
    "lab_results",
    "prescriptions",
    "treatment_plans",
    "plan_goals",
    "plan_activities",
    "care_relationships",
    "audit_events",
    "audit_chains",
];

/// The rows of some patients (or of the clinics and staff), one batch per table in an order
/// that satisfies the foreign keys.
pub type Chunk = Vec<Batch>;

/// One person's identity as the loader writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub id: Uuid,
    pub cpr: String,
    pub given_name: &'static str,
    pub family_name: &'static str,
    /// Days since 1970-01-01.
    pub birth_day: i64,
    pub female: bool,
}

/// Birth dates of the population: 1925-01-01 up to and including 2019-12-31. Numbers for
/// later dates are left to the FHIR import scenario (`import_cpr`), so they never clash.
fn birth_range() -> Range<i64> {
    days_from_civil(1925, 1, 1)..days_from_civil(2020, 1, 1)
}

/// A valid, unique CPR number for patient `i`: the birth date cycles through the range, and
/// the serial counts how many times it has, with the last digit's parity giving the sex.
/// Unique while `i` < days in range x 2,000 (about 69 million).
fn cpr_for(i: u64, female: bool) -> (String, i64) {
    let range = birth_range();
    let span = (range.end - range.start) as u64;
    let birth_day = range.start + (i % span) as i64;
    let serial = 2 * (i / span) + u64::from(!female);
    let (year, month, day) = civil_parts(birth_day);
    // The seventh digit puts the year in its century (CPR office table): 0-3 for 1900-1999,
    // 4-7 for 2000-2036.
    let seventh = if year < 2000 {
        serial / 1000
    } else {
        4 + serial / 1000
    };
    (
        format!(
            "{day:02}{month:02}{:02}{seventh}{:03}",
            year % 100,
            serial % 1000
        ),
        birth_day,
    )
}

/// The `n`-th CPR number for a patient brought in by the FHIR import scenario: born 2020-2024,
/// a range the loaded population leaves free. Returns the number and the birth date.
pub fn import_cpr(n: u64) -> (String, String) {
    let start = days_from_civil(2020, 1, 1);
    let span = (days_from_civil(2025, 1, 1) - start) as u64;
    let birth_day = start + (n % span) as i64;
    let serial = (n / span) % 1000;
    let (year, month, day) = civil_parts(birth_day);
    (
        format!("{day:02}{month:02}{:02}5{serial:03}", year % 100),
        crate::rows::date_text(birth_day),
    )
}

fn civil_parts(days: i64) -> (i64, u32, u32) {
    let text = crate::rows::date_text(days);
    let year = text[..4].parse().unwrap_or(1970);
    let month = text[5..7].parse().unwrap_or(1);
    let day = text[8..].parse().unwrap_or(1);
    (year, month, day)
}

fn rng_for(stream: u64, i: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(SEED ^ stream.rotate_left(48) ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// Patient `i` as loaded.
pub fn person(i: u64) -> Person {
    let mut rng = rng_for(1, i);
    let female = rng.gen_bool(0.5);
    let given = if female { FEMALE_NAMES } else { MALE_NAMES };
    let given_name = given[rng.gen_range(0..given.len())];
    let family_name = FAMILY_NAMES[rng.gen_range(0..FAMILY_NAMES.len())];
    let (cpr, birth_day) = cpr_for(i, female);
    Person {
        id: patient_id(i),
        cpr,
        given_name,
        family_name,
        birth_day,
        female,
    }
}

fn clinician_name(c: u64) -> String {
    let mut rng = rng_for(2, c);
    let female = rng.gen_bool(0.5);
    let given = if female { FEMALE_NAMES } else { MALE_NAMES };
    format!(
        "Dr. {} {}",
        given[rng.gen_range(0..given.len())],
        FAMILY_NAMES[rng.gen_range(0..FAMILY_NAMES.len())]
    )
}

/// Builds the rows; `now` (microseconds since the epoch) anchors every date of the history.
pub struct Generator {
    pub spec: Spec,
    password_hash: String,
    now: i64,
}

impl Generator {
    pub fn new(spec: Spec, password_hash: String, now: i64) -> Self {
        Self {
            spec,
            password_hash,
            now,
        }
    }

    /// Clinics, clinicians and auditors: what the patients' rows refer to.
    pub fn staff(&self) -> Chunk {
        let spec = &self.spec;
        let mut clinics = Batch::new("clinics", CLINIC_COLUMNS);
        for k in 0..spec.clinics() {
            clinics.row([
                Val::Uuid(clinic_id(k)),
                Val::Text(format!("Lægehuset {k}")),
                Val::Static("general_practice"),
                Val::Text(format!("Klinikvej {}, {} Benchby", k + 1, 1000 + k % 9000)),
                Val::Text(format!(
                    "+45 70 {:02} {:02} {:02}",
                    k / 10_000 % 100,
                    k / 100 % 100,
                    k % 100
                )),
                Val::Ts(self.now - 800 * DAY_MICROS),
            ]);
        }
        let mut users = Batch::new("users", USER_COLUMNS);
        for c in 0..spec.clinicians() {
            let username = clinician_username(c);
            let secret = totp_secret(&username);
            users.row([
                Val::Uuid(id(Kind::Clinician, c)),
                Val::Text(username),
                Val::Text(clinician_name(c)),
                Val::Text(self.password_hash.clone()),
                Val::Static("clinician"),
                Val::Null,
                Val::Uuid(clinic_id(spec.clinic_of_clinician(c))),
                Val::Text(secret),
                Val::Int(0),
                Val::Ts(self.now - 700 * DAY_MICROS),
            ]);
        }
        for a in 0..spec.auditors {
            let username = auditor_username(a);
            let secret = totp_secret(&username);
            users.row([
                Val::Uuid(id(Kind::Auditor, a)),
                Val::Text(username),
                Val::Text(format!("Revisor {a}")),
                Val::Text(self.password_hash.clone()),
                Val::Static("auditor"),
                Val::Null,
                Val::Null,
                Val::Text(secret),
                Val::Int(0),
                Val::Ts(self.now - 700 * DAY_MICROS),
            ]);
        }
        vec![clinics, users]
    }

    /// Every row about patients `range`: records, accounts, care relationships, and the
    /// patients' audit chains with their heads.
    pub fn patients(&self, range: Range<u64>) -> Chunk {
        let spec = &self.spec;
        let mut patients = Batch::new("patients", PATIENT_COLUMNS);
        let mut labs = Batch::new("lab_results", LAB_COLUMNS);
        let mut prescriptions = Batch::new("prescriptions", PRESCRIPTION_COLUMNS);
        let mut plans = Batch::new("treatment_plans", PLAN_COLUMNS);
        let mut goals = Batch::new("plan_goals", GOAL_COLUMNS);
        let mut activities = Batch::new("plan_activities", ACTIVITY_COLUMNS);
        let mut users = Batch::new("users", USER_COLUMNS);
        let mut care = Batch::new("care_relationships", CARE_COLUMNS);
        let mut events = Batch::new("audit_events", AUDIT_COLUMNS);
        let mut chains = Batch::new("audit_chains", CHAIN_COLUMNS);
        for i in range {
            let p = person(i);
            let clinic = spec.clinic_of_patient(i);
            let mut rng = rng_for(3, i);
            patients.row([
                Val::Uuid(p.id),
                Val::Text(p.cpr.clone()),
                Val::Static(p.given_name),
                Val::Static(p.family_name),
                Val::Date(p.birth_day),
                Val::Static(if p.female { "female" } else { "male" }),
                Val::Uuid(clinic_id(clinic)),
                Val::Static(SOURCE),
                Val::Text(format!("patient-{i:09}")),
                Val::Null,
                Val::Ts(self.now - 600 * DAY_MICROS),
            ]);
            self.lab_results(i, &p, &mut rng, &mut labs);
            self.prescriptions(i, &p, &mut rng, &mut prescriptions);
            self.plan(i, &p, &mut rng, &mut plans, &mut goals, &mut activities);
            if i < spec.patient_users() {
                users.row([
                    Val::Uuid(id(Kind::PatientUser, i)),
                    Val::Text(patient_username(i)),
                    Val::Text(format!("{} {}", p.given_name, p.family_name)),
                    Val::Text(self.password_hash.clone()),
                    Val::Static("patient"),
                    Val::Uuid(p.id),
                    Val::Null,
                    Val::Null,
                    Val::Int(0),
                    Val::Ts(self.now - 500 * DAY_MICROS),
                ]);
            }
            let every = spec.care_relationship_every.max(1);
            if spec.clinics() > 1 && i % every == 0 {
                let other = (clinic + 1) % spec.clinics();
                care.row([
                    Val::Uuid(id(Kind::Care, i / every)),
                    Val::Uuid(id(Kind::Clinician, other)),
                    Val::Uuid(p.id),
                    Val::Ts(self.now - 200 * DAY_MICROS),
                    Val::Null,
                    Val::Static("Shared care after hospital discharge"),
                    Val::Ts(self.now - 200 * DAY_MICROS),
                ]);
            }
            self.patient_chain(i, &p, clinic, &mut rng, &mut events, &mut chains);
        }
        vec![
            patients,
            labs,
            prescriptions,
            plans,
            goals,
            activities,
            users,
            care,
            events,
            chains,
        ]
    }

    fn lab_results(&self, i: u64, p: &Person, rng: &mut ChaCha8Rng, out: &mut Batch) {
        let n = self.spec.lab_results_per_patient;
        let rounds = n.div_ceil(LAB_TESTS.len() as u64).max(1) as i64;
        for k in 0..n {
            let (code, display, unit, low, high, typical, spread) =
                LAB_TESTS[k as usize % LAB_TESTS.len()];
            let round = (k / LAB_TESTS.len() as u64) as i64;
            // Rounds of tests spread over the last two years, oldest first.
            let effective = self.now - (rounds - round) * 240 * DAY_MICROS
                + rng.gen_range(0..30) * DAY_MICROS
                + rng.gen_range(7..11) * 3_600_000_000;
            let issued = effective + rng.gen_range(4..30) * 3_600_000_000;
            let value = ((typical + rng.gen_range(-spread..spread)).max(0.1) * 10.0).round() / 10.0;
            out.row([
                Val::Uuid(id(Kind::Lab, i * 64 + k)),
                Val::Uuid(p.id),
                Val::Static("http://loinc.org"),
                Val::Static(code),
                Val::Static(display),
                Val::Real(value),
                Val::Null,
                Val::Static(unit),
                Val::Real(low),
                Val::Real(high),
                Val::Static(Interpretation::classify(value, Some(low), Some(high)).as_str()),
                Val::Static("final"),
                Val::Ts(effective),
                Val::Ts(issued),
                Val::Static(LABS[rng.gen_range(0..LABS.len())]),
                Val::Ts(issued),
                Val::Int(1),
                Val::Static(SOURCE),
                Val::Text(format!("lab-{i:09}-{k:02}")),
                Val::Static("laboratory"),
            ]);
        }
    }

    fn prescriptions(&self, i: u64, p: &Person, rng: &mut ChaCha8Rng, out: &mut Batch) {
        let mut meds: Vec<&(&str, &str, &str)> = MEDICINES.iter().collect();
        meds.shuffle(rng);
        let today = self.now.div_euclid(DAY_MICROS);
        for k in 0..self.spec.prescriptions_per_patient {
            let &(code, name, dosage) = meds[k as usize % meds.len()];
            let start = today - rng.gen_range(30..1500);
            // Three current medicines, the rest finished courses.
            let (status, until) = if k < 3 {
                ("active", Val::Null)
            } else {
                ("completed", Val::Date(start + rng.gen_range(7..300)))
            };
            out.row([
                Val::Uuid(id(Kind::Prescription, i * 16 + k)),
                Val::Uuid(p.id),
                Val::Static("http://www.whocc.no/atc"),
                Val::Static(code),
                Val::Static(name),
                Val::Static(dosage),
                Val::Static(status),
                Val::Ts(start * DAY_MICROS + 36_000_000_000),
                Val::Static("Dr. Mette Hansen"),
                Val::Date(start),
                until,
                Val::Null,
                Val::Int(1),
                Val::Static(SOURCE),
                Val::Text(format!("rx-{i:09}-{k:02}")),
            ]);
        }
    }

    fn plan(
        &self,
        i: u64,
        p: &Person,
        rng: &mut ChaCha8Rng,
        plans: &mut Batch,
        goals: &mut Batch,
        activities: &mut Batch,
    ) {
        let (title, description, plan_goals, plan_activities) =
            PLANS[rng.gen_range(0..PLANS.len())];
        let start = self.now.div_euclid(DAY_MICROS) - rng.gen_range(20..700);
        let plan = id(Kind::Plan, i);
        plans.row([
            Val::Uuid(plan),
            Val::Uuid(p.id),
            Val::Static(title),
            Val::Static(description),
            Val::Static("active"),
            Val::Date(start),
            Val::Null,
            Val::Static("Dr. Mette Hansen"),
            Val::Ts(start * DAY_MICROS),
            Val::Int(1),
            Val::Static(SOURCE),
            Val::Text(format!("plan-{i:09}")),
        ]);
        for (position, (goal, target)) in plan_goals.iter().enumerate() {
            goals.row([
                Val::Uuid(id(Kind::Goal, i * PLAN_ITEM_SLOTS + position as u64)),
                Val::Uuid(plan),
                Val::Int(position as i64),
                Val::Static(goal),
                if target.is_empty() {
                    Val::Null
                } else {
                    Val::Static(target)
                },
                Val::Static("active"),
            ]);
        }
        for (position, activity) in plan_activities.iter().enumerate() {
            activities.row([
                Val::Uuid(id(Kind::Activity, i * PLAN_ITEM_SLOTS + position as u64)),
                Val::Uuid(plan),
                Val::Int(position as i64),
                Val::Static(activity),
                Val::Static(if position == 0 {
                    "in-progress"
                } else {
                    "scheduled"
                }),
            ]);
        }
    }

    /// The patient's chain: a laboratory delivering results, then the GP clinic reading the
    /// summary and the results, then (every fourth event) a clinician of another clinic denied.
    fn patient_chain(
        &self,
        i: u64,
        p: &Person,
        clinic: u64,
        rng: &mut ChaCha8Rng,
        events: &mut Batch,
        chains: &mut Batch,
    ) {
        let n = self.spec.audit_events_per_patient;
        if n == 0 {
            return;
        }
        let chain = p.id.to_string();
        let gp = clinic;
        let other = (clinic + 1) % self.spec.clinics();
        let span = 365 * DAY_MICROS / (n as i64 + 1);
        let mut prev = GENESIS_HASH.to_string();
        for k in 0..n {
            let at =
                self.now - 400 * DAY_MICROS + (k as i64 + 1) * span + rng.gen_range(0..span / 2);
            let mut event = match k % 4 {
                0 => self.event_by_lab(at),
                1 => self.event_by_clinician(
                    gp,
                    at,
                    "read summary",
                    "summary",
                    "allowed",
                    "gp_listing",
                    "",
                ),
                2 => self.event_by_clinician(
                    gp,
                    at,
                    "read lab_results",
                    "lab_results",
                    "allowed",
                    "gp_listing",
                    "",
                ),
                _ => self.event_by_clinician(
                    other,
                    at,
                    "read summary",
                    "summary",
                    "denied",
                    "",
                    "no_treatment_relationship",
                ),
            };
            event.id = id(Kind::Audit, i * 64 + k);
            event.chain_key = chain.clone();
            event.seq = k as i64 + 1;
            event.patient_id = Some(p.id);
            event.prev_hash = prev;
            event.hash = event.compute_hash();
            prev = event.hash.clone();
            push_event(events, event);
        }
        chains.row([Val::Text(chain), Val::Int(n as i64), Val::Text(prev)]);
    }

    fn event_by_lab(&self, at: i64) -> AuditEvent {
        AuditEvent {
            actor_id: Some(id(Kind::SystemClient, 0)),
            actor_name: "system client bench-lab".into(),
            actor_role: "system".into(),
            action: "write lab_results".into(),
            resource_type: "lab_results".into(),
            basis: "source_system".into(),
            reason: format!("from {SOURCE}"),
            client_addr: "192.0.2.10".into(),
            ..blank_event(at)
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn event_by_clinician(
        &self,
        clinician: u64,
        at: i64,
        action: &str,
        resource: &str,
        outcome: &str,
        basis: &str,
        reason: &str,
    ) -> AuditEvent {
        AuditEvent {
            actor_id: Some(id(Kind::Clinician, clinician)),
            actor_name: clinician_name(clinician),
            actor_role: "clinician".into(),
            actor_clinic_id: Some(clinic_id(self.spec.clinic_of_clinician(clinician))),
            action: action.into(),
            resource_type: resource.into(),
            outcome: outcome.into(),
            basis: basis.into(),
            reason: reason.into(),
            client_addr: format!("192.0.2.{}", 20 + clinician % 200),
            ..blank_event(at)
        }
    }

    /// The system chain: staff sign-ins, oldest first.
    pub fn system_chain(&self) -> Chunk {
        let spec = &self.spec;
        let n = spec.system_events();
        let mut events = Batch::new("audit_events", AUDIT_COLUMNS);
        let mut chains = Batch::new("audit_chains", CHAIN_COLUMNS);
        if n == 0 {
            return vec![events, chains];
        }
        let step = 365 * DAY_MICROS / n as i64;
        let mut prev = GENESIS_HASH.to_string();
        for k in 0..n {
            let staff = k % (spec.clinicians() + spec.auditors);
            let at = self.now - 400 * DAY_MICROS + k as i64 * step;
            let mut event = if staff < spec.clinicians() {
                self.event_by_clinician(staff, at, "login", "", "success", "", "")
            } else {
                let a = staff - spec.clinicians();
                AuditEvent {
                    actor_id: Some(id(Kind::Auditor, a)),
                    actor_name: format!("Revisor {a}"),
                    actor_role: "auditor".into(),
                    action: "login".into(),
                    outcome: "success".into(),
                    client_addr: "192.0.2.5".into(),
                    ..blank_event(at)
                }
            };
            event.id = id(Kind::Audit, (1 << 52) + k);
            event.seq = k as i64 + 1;
            event.prev_hash = prev;
            event.hash = event.compute_hash();
            prev = event.hash.clone();
            push_event(&mut events, event);
        }
        chains.row([
            Val::Static(SYSTEM_CHAIN),
            Val::Int(n as i64),
            Val::Text(prev),
        ]);
        vec![events, chains]
    }
}

fn blank_event(at: i64) -> AuditEvent {
    AuditEvent {
        id: Uuid::nil(),
        chain_key: SYSTEM_CHAIN.into(),
        seq: 0,
        occurred_at: ts_text(at),
        actor_id: None,
        actor_name: String::new(),
        actor_role: String::new(),
        actor_clinic_id: None,
        on_behalf_of: None,
        patient_id: None,
        action: String::new(),
        resource_type: String::new(),
        resource_id: None,
        basis: String::new(),
        outcome: String::new(),
        reason: String::new(),
        client_addr: String::new(),
        // The history is written in the encoding without an address commitment, which
        // verifies as events stored before the commitment existed do.
        client_addr_key: None,
        client_addr_commitment: None,
        prev_hash: String::new(),
        hash: String::new(),
    }
}

fn push_event(events: &mut Batch, e: AuditEvent) {
    events.row([
        Val::Uuid(e.id),
        Val::Text(e.chain_key),
        Val::Int(e.seq),
        Val::Text(e.occurred_at),
        Val::opt_uuid(e.actor_id),
        Val::Text(e.actor_name),
        Val::Text(e.actor_role),
        Val::opt_uuid(e.actor_clinic_id),
        e.on_behalf_of.map_or(Val::Null, Val::Text),
        Val::opt_uuid(e.patient_id),
        Val::Text(e.action),
        Val::Text(e.resource_type),
        e.resource_id.map_or(Val::Null, Val::Text),
        Val::Text(e.basis),
        Val::Text(e.outcome),
        Val::Text(e.reason),
        Val::Text(e.client_addr),
        Val::Text(e.prev_hash),
        Val::Text(e.hash),
    ]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use records_domain::Cpr;
    use std::collections::HashSet;

    #[test]
    fn every_plan_fits_its_id_slots() {
        for (title, _, goals, activities) in PLANS {
            assert!(
                goals.len() as u64 <= PLAN_ITEM_SLOTS,
                "{title}: too many goals"
            );
            assert!(
                activities.len() as u64 <= PLAN_ITEM_SLOTS,
                "{title}: too many activities"
            );
        }
    }

    #[test]
    fn cpr_numbers_are_valid_unique_and_match_birth_date_and_sex() {
        let mut seen = HashSet::new();
        // Across several laps of the birth-date range, where the serials change.
        let span = (birth_range().end - birth_range().start) as u64;
        for i in (0..5_000)
            .chain(span - 50..span + 50)
            .chain(3 * span..3 * span + 2_000)
        {
            let p = person(i);
            let cpr = Cpr::parse(&p.cpr).unwrap_or_else(|e| panic!("{}: {e}", p.cpr));
            assert_eq!(
                crate::rows::date_text(p.birth_day),
                records_domain::db::date_text(cpr.birth_date())
            );
            assert_eq!(cpr.is_odd(), !p.female, "{}", p.cpr);
            assert!(seen.insert(p.cpr.clone()), "duplicate {}", p.cpr);
        }
        for n in 0..3_000 {
            let (cpr, birth) = import_cpr(n);
            let parsed = Cpr::parse(&cpr).unwrap_or_else(|e| panic!("{cpr}: {e}"));
            assert_eq!(records_domain::db::date_text(parsed.birth_date()), birth);
            assert!(seen.insert(cpr.clone()), "import number {cpr} clashes");
        }
    }

    #[test]
    fn identifiers_rise_with_the_patient_number() {
        let ids: Vec<String> = (0..2_000).map(|i| patient_id(i).to_string()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(patient_id(7).get_version_num(), 7);
    }
}
