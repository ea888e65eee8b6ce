//! Property tests for `decide`: invariants that must hold for every actor, every action and
//! every combination of facts, not only for the hand-picked cases in `tests.rs`.
//!
//! Identifiers come from small pools so that the interesting coincidences (a block naming this
//! very clinician, a GP listing with this very clinic, a patient user who *is* the patient)
//! happen often. Times are generated relative to `now` so that periods start, end and expire
//! right at `now` as well as far before and after it.

use proptest::prelude::*;
use proptest::sample::{select, subsequence};
use time::{Date, Duration, Month, Time};

use super::*;
use crate::actor::Reach;

// ---------------------------------------------------------------------------------------------
// Configuration

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        // Do not write `proptest-regressions/` files into the source tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Pools of identifiers

const USER_IDS: [u128; 4] = [100, 101, 102, 103];
const CLINIC_IDS: [u128; 3] = [1, 2, 3];
const PATIENT_IDS: [u128; 3] = [10, 11, 12];

const CLINICAL_SET: [Category; 9] = CLINICAL;

fn user_id() -> impl Strategy<Value = Uuid> {
    select(USER_IDS.to_vec()).prop_map(Uuid::from_u128)
}
fn clinic_id() -> impl Strategy<Value = Uuid> {
    select(CLINIC_IDS.to_vec()).prop_map(Uuid::from_u128)
}
fn patient_id() -> impl Strategy<Value = PatientId> {
    select(PATIENT_IDS.to_vec()).prop_map(|n| PatientId(Uuid::from_u128(n)))
}

fn role() -> impl Strategy<Value = Role> {
    select(vec![
        Role::Patient,
        Role::Clinician,
        Role::Auditor,
        Role::Administrator,
        Role::System,
    ])
}

/// Users as the pages see them: the whole of their role.
fn actor_with_role(role: impl Strategy<Value = Role>) -> impl Strategy<Value = Actor> {
    actor_with(role, Just(Reach::WholeRole))
}

fn actor_with(
    role: impl Strategy<Value = Role>,
    reach: impl Strategy<Value = Reach>,
) -> impl Strategy<Value = Actor> {
    (
        user_id(),
        role,
        proptest::option::of(patient_id()),
        proptest::option::of(clinic_id()),
        reach,
    )
        .prop_map(|(user_id, role, patient_id, clinic_id, reach)| Actor {
            user_id,
            name: "Generated".into(),
            role,
            patient_id,
            clinic_id,
            reach,
        })
}

/// Mostly users signed in to the pages; sometimes narrowed by a `patient/` token or trusted as
/// the population register.
fn reach() -> impl Strategy<Value = Reach> {
    prop_oneof![
        6 => Just(Reach::WholeRole),
        2 => Just(Reach::OwnRecordOnly),
        2 => Just(Reach::PopulationRegister),
    ]
}

/// Any role, signed in any way.
fn any_actor() -> impl Strategy<Value = Actor> {
    actor_with(role(), reach())
}

fn category() -> impl Strategy<Value = Category> {
    select(Category::ALL.to_vec())
}

fn clinical_category() -> impl Strategy<Value = Category> {
    select(CLINICAL_SET.to_vec())
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        Just(Action::ReadSummary),
        category().prop_map(Action::Read),
        category().prop_map(Action::Write),
        Just(Action::ManageConsent),
        Just(Action::RequestRenewal),
        Just(Action::Identify),
    ]
}

/// Actions on the record, and changing who the patient is.
fn any_action() -> impl Strategy<Value = Action> {
    prop_oneof![4 => action(), 1 => Just(Action::WriteDemographics)]
}

/// The reads an emergency override exists for.
fn clinical_read() -> impl Strategy<Value = Action> {
    prop_oneof![
        Just(Action::ReadSummary),
        clinical_category().prop_map(Action::Read),
    ]
}

/// Everything a clinician may in principle be allowed (reads and writes of clinical parts).
fn clinical_action() -> impl Strategy<Value = Action> {
    prop_oneof![
        Just(Action::ReadSummary),
        clinical_category().prop_map(Action::Read),
        clinical_category().prop_map(Action::Write),
    ]
}

fn settings() -> impl Strategy<Value = PolicySettings> {
    prop_oneof![
        Just(PolicySettings::default()),
        subsequence(Category::ALL.to_vec(), 0..=Category::ALL.len()).prop_map(
            |guardian_categories| PolicySettings {
                guardian_categories
            }
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// Dates and times

fn today() -> Date {
    OffsetDateTime::now_utc().date()
}

fn midnight(d: Date) -> OffsetDateTime {
    d.with_time(Time::MIDNIGHT).assume_utc()
}

/// Birth dates from 1900 to today, biased towards children and towards 29 February.
fn birth_date() -> impl Strategy<Value = Date> {
    let first = Date::from_calendar_date(1900, Month::January, 1).unwrap();
    let span = (today() - first).whole_days();
    prop_oneof![
        3 => (0..=span).prop_map(move |d| first + Duration::days(d)),
        // A child: born in the last 16 years.
        3 => (0..=16 * 366i64).prop_map(|d| today() - Duration::days(d)),
        // Leap-day birthdays, where "the 15th birthday" needs a convention.
        1 => (0..=30i32).prop_map(|k| {
            let y = 1904 + 4 * k; // leap years up to 2024 (1900 is not a leap year)
            Date::from_calendar_date(y, Month::February, 29).unwrap()
        }),
    ]
}

/// A `now` on or after the birth date: anywhere in the following 100 years, or within days of
/// the 15th birthday, at any time of day.
fn now_after(birth: Date) -> impl Strategy<Value = OffsetDateTime> {
    let day = prop_oneof![
        (0..=100 * 366i64),
        // 15 * 365 + 3 or 4 leap days = 5478 or 5479 days to the 15th birthday.
        (5470..=5490i64),
    ];
    let second_of_day = prop_oneof![Just(0i64), Just(86_399i64), 0..86_400i64];
    (day, second_of_day)
        .prop_map(move |(d, s)| midnight(birth) + Duration::days(d) + Duration::seconds(s))
}

/// An offset from `now`: exactly zero, a second or two, or days to decades either way.
fn offset() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        (-2..=2i64).prop_map(Duration::seconds),
        (-60..=60i64).prop_map(Duration::minutes),
        (-400..=400i64).prop_map(Duration::days),
        (-40..=40i64).prop_map(|y| Duration::days(365 * y)),
    ]
}

fn non_negative_offset() -> impl Strategy<Value = Duration> {
    offset().prop_map(Duration::abs)
}

/// A period placed relative to `now` (which it may or may not contain).
#[derive(Debug, Clone, Copy)]
struct RelPeriod {
    from: Duration,
    until: Option<Duration>,
}

impl RelPeriod {
    fn at(self, now: OffsetDateTime) -> Period {
        Period {
            from: now + self.from,
            until: self.until.map(|u| now + u),
        }
    }
}

fn rel_period() -> impl Strategy<Value = RelPeriod> {
    (offset(), proptest::option::of(offset())).prop_map(|(from, until)| RelPeriod { from, until })
}

/// A period that contains `now`.
fn active_rel_period() -> impl Strategy<Value = RelPeriod> {
    (
        non_negative_offset(),
        proptest::option::of(non_negative_offset()),
    )
        .prop_map(|(back, ahead)| RelPeriod {
            from: -back,
            // `until` is exclusive: strictly after now.
            until: ahead.map(|a| a + Duration::seconds(1)),
        })
}

/// A period that does not contain `now`: ended at or before it, or not yet begun.
fn inactive_rel_period() -> impl Strategy<Value = RelPeriod> {
    prop_oneof![
        // Ended: until <= now.
        (non_negative_offset(), non_negative_offset()).prop_map(|(back, len)| RelPeriod {
            from: -back - len,
            until: Some(-back),
        }),
        // Not yet begun: from > now.
        (
            non_negative_offset(),
            proptest::option::of(non_negative_offset())
        )
            .prop_map(|(ahead, len)| {
                let from = ahead + Duration::seconds(1);
                RelPeriod {
                    from,
                    until: len.map(|l| from + l),
                }
            }),
    ]
}

// ---------------------------------------------------------------------------------------------
// Facts

#[derive(Debug, Clone)]
struct RelProxy {
    kind: ProxyKind,
    period: RelPeriod,
    revoked: bool,
}

#[derive(Debug, Clone)]
enum Target {
    Clinician(Uuid),
    Clinic(Uuid),
}

#[derive(Debug, Clone)]
struct RelBlock {
    target: Target,
    period: RelPeriod,
    lifted: bool,
}

/// Facts with every time relative to `now`; resolved by `at(now)`.
#[derive(Debug, Clone)]
struct RelFacts {
    patient_id: PatientId,
    birth_date: Date,
    gp_clinic_id: Option<Uuid>,
    proxies: Vec<RelProxy>,
    care_relationships: Vec<RelPeriod>,
    blocks: Vec<RelBlock>,
    overrides: Vec<Duration>,
}

fn proxy_kind() -> impl Strategy<Value = ProxyKind> {
    select(vec![ProxyKind::Guardian, ProxyKind::PowerOfAttorney])
}

fn proxy() -> impl Strategy<Value = RelProxy> {
    (proxy_kind(), rel_period(), any::<bool>()).prop_map(|(kind, period, revoked)| RelProxy {
        kind,
        period,
        revoked,
    })
}

fn target() -> impl Strategy<Value = Target> {
    // The schema demands exactly one of clinician_id and clinic_id.
    prop_oneof![
        user_id().prop_map(Target::Clinician),
        clinic_id().prop_map(Target::Clinic),
    ]
}

fn block() -> impl Strategy<Value = RelBlock> {
    (target(), rel_period(), any::<bool>()).prop_map(|(target, period, lifted)| RelBlock {
        target,
        period,
        lifted,
    })
}

fn rel_facts() -> impl Strategy<Value = RelFacts> {
    (
        patient_id(),
        birth_date(),
        proptest::option::of(clinic_id()),
        proptest::collection::vec(proxy(), 0..4),
        proptest::collection::vec(rel_period(), 0..4),
        proptest::collection::vec(block(), 0..4),
        proptest::collection::vec(offset(), 0..3),
    )
        .prop_map(
            |(patient_id, birth_date, gp_clinic_id, proxies, care, blocks, overrides)| RelFacts {
                patient_id,
                birth_date,
                gp_clinic_id,
                proxies,
                care_relationships: care,
                blocks,
                overrides,
            },
        )
}

fn resolve_block(b: &RelBlock, now: OffsetDateTime) -> BlockFact {
    let (clinician_id, clinic_id) = match b.target {
        Target::Clinician(id) => (Some(id), None),
        Target::Clinic(id) => (None, Some(id)),
    };
    BlockFact {
        clinician_id,
        clinic_id,
        period: b.period.at(now),
        lifted: b.lifted,
    }
}

impl RelFacts {
    fn at(&self, now: OffsetDateTime) -> Facts {
        Facts {
            patient_id: self.patient_id,
            birth_date: self.birth_date,
            gp_clinic_id: self.gp_clinic_id,
            proxies: self
                .proxies
                .iter()
                .map(|p| ProxyFact {
                    kind: p.kind,
                    period: p.period.at(now),
                    revoked: p.revoked,
                })
                .collect(),
            care_relationships: self.care_relationships.iter().map(|p| p.at(now)).collect(),
            blocks: self.blocks.iter().map(|b| resolve_block(b, now)).collect(),
            override_expires_at: self.overrides.iter().map(|&o| now + o).collect(),
        }
    }
}

/// A whole situation: who asks, for what, about whom, when, under which settings.
#[derive(Debug, Clone)]
struct Case {
    actor: Actor,
    action: Action,
    facts: Facts,
    settings: PolicySettings,
    now: OffsetDateTime,
}

impl Case {
    fn decide(&self) -> Decision {
        decide(
            &self.actor,
            self.action,
            &self.facts,
            &self.settings,
            self.now,
        )
    }
}

fn case_with(
    actor: impl Strategy<Value = Actor>,
    action: impl Strategy<Value = Action>,
) -> impl Strategy<Value = Case> {
    (actor, action, rel_facts(), settings()).prop_flat_map(|(actor, action, rel, settings)| {
        now_after(rel.birth_date).prop_map(move |now| Case {
            actor: actor.clone(),
            action,
            facts: rel.at(now),
            settings: settings.clone(),
            now,
        })
    })
}

fn any_case() -> impl Strategy<Value = Case> {
    case_with(any_actor(), any_action())
}

// ---------------------------------------------------------------------------------------------
// Independent oracles (written from the law and the schema, not copied from `decide`)

/// The first day on which the child is 15. Someone born on 29 February turns 15 on 1 March
/// in a non-leap year (the convention `age_on` implements).
fn fifteenth_birthday(birth: Date) -> Date {
    let year = birth.year() + 15;
    Date::from_calendar_date(year, birth.month(), birth.day())
        .unwrap_or_else(|_| Date::from_calendar_date(year, Month::March, 1).unwrap())
}

/// Danish calendar day, counted at UTC+2 like the policy does.
fn is_15_or_older(birth: Date, now: OffsetDateTime) -> bool {
    now.to_offset(time::macros::offset!(+2)).date() >= fifteenth_birthday(birth)
}

fn active(p: &Period, now: OffsetDateTime) -> bool {
    p.from <= now && p.until.is_none_or(|u| now < u)
}

fn holds_active(facts: &Facts, kind: ProxyKind, now: OffsetDateTime) -> bool {
    facts
        .proxies
        .iter()
        .any(|p| p.kind == kind && !p.revoked && active(&p.period, now))
}

fn block_applies(b: &BlockFact, actor: &Actor, now: OffsetDateTime) -> bool {
    let names_clinician = b.clinician_id == Some(actor.user_id);
    let names_clinic = b.clinic_id.is_some() && b.clinic_id == actor.clinic_id;
    !b.lifted && active(&b.period, now) && (names_clinician || names_clinic)
}

fn has_active_override(facts: &Facts, now: OffsetDateTime) -> bool {
    facts.override_expires_at.iter().any(|&end| end > now)
}

/// The most any basis can cover.
fn scope_of(basis: Basis, settings: &PolicySettings) -> Vec<Category> {
    match basis {
        Basis::OwnRecord | Basis::PowerOfAttorney => Category::ALL.to_vec(),
        Basis::Guardian => settings.guardian_categories.clone(),
        Basis::GpListing | Basis::CareRelationship | Basis::EmergencyOverride => {
            CLINICAL_SET.to_vec()
        }
        Basis::SourceSystem => CLINICAL_SET.to_vec(),
        Basis::PopulationRegister => Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// A model of `gate::load_facts`: the database as rows, filtered per actor and patient

#[derive(Debug, Clone)]
struct PatientRow {
    id: PatientId,
    birth_date: Date,
    gp_clinic_id: Option<Uuid>,
}

#[derive(Debug, Clone, Default)]
struct World {
    patients: Vec<PatientRow>,
    proxies: Vec<(PatientId, Uuid, ProxyFact)>,
    care: Vec<(PatientId, Uuid, Period)>,
    blocks: Vec<(PatientId, BlockFact)>,
    overrides: Vec<(PatientId, Uuid, OffsetDateTime)>,
}

impl World {
    /// The same selection `load_facts` makes: this actor's proxies, care relationships and
    /// unexpired overrides for this patient, and all of this patient's blocks.
    fn load(&self, actor: &Actor, patient: PatientId, now: OffsetDateTime) -> Facts {
        let row = self.patients.iter().find(|p| p.id == patient).unwrap();
        let uid = actor.user_id;
        Facts {
            patient_id: patient,
            birth_date: row.birth_date,
            gp_clinic_id: row.gp_clinic_id,
            proxies: self
                .proxies
                .iter()
                .filter(|(p, u, _)| *p == patient && *u == uid)
                .map(|(_, _, f)| f.clone())
                .collect(),
            care_relationships: self
                .care
                .iter()
                .filter(|(p, u, _)| *p == patient && *u == uid)
                .map(|(_, _, f)| *f)
                .collect(),
            blocks: self
                .blocks
                .iter()
                .filter(|(p, _)| *p == patient)
                .map(|(_, b)| b.clone())
                .collect(),
            override_expires_at: self
                .overrides
                .iter()
                .filter(|(p, u, e)| *p == patient && *u == uid && *e > now)
                .map(|(_, _, e)| *e)
                .collect(),
        }
    }

    /// The rows behind `facts` as loaded for `actor`.
    fn of(actor: &Actor, facts: &Facts) -> Self {
        let (p, u) = (facts.patient_id, actor.user_id);
        Self {
            patients: vec![PatientRow {
                id: p,
                birth_date: facts.birth_date,
                gp_clinic_id: facts.gp_clinic_id,
            }],
            proxies: facts.proxies.iter().map(|f| (p, u, f.clone())).collect(),
            care: facts
                .care_relationships
                .iter()
                .map(|f| (p, u, *f))
                .collect(),
            blocks: facts.blocks.iter().map(|b| (p, b.clone())).collect(),
            overrides: facts
                .override_expires_at
                .iter()
                .map(|e| (p, u, *e))
                .collect(),
        }
    }
}

/// Rows about other patients and other users, as generated (before filtering out any that
/// happen to concern the actor and patient under test).
#[derive(Debug, Clone)]
struct ForeignRows {
    other_patients: Vec<(PatientId, Date, Option<Uuid>)>,
    proxies: Vec<(PatientId, Uuid, RelProxy)>,
    care: Vec<(PatientId, Uuid, RelPeriod)>,
    blocks: Vec<(PatientId, RelBlock)>,
    overrides: Vec<(PatientId, Uuid, Duration)>,
}

fn foreign_rows() -> impl Strategy<Value = ForeignRows> {
    (
        proptest::collection::vec(
            (
                patient_id(),
                birth_date(),
                proptest::option::of(clinic_id()),
            ),
            0..3,
        ),
        proptest::collection::vec((patient_id(), user_id(), proxy()), 0..6),
        proptest::collection::vec((patient_id(), user_id(), rel_period()), 0..6),
        proptest::collection::vec((patient_id(), block()), 0..6),
        proptest::collection::vec((patient_id(), user_id(), offset()), 0..4),
    )
        .prop_map(
            |(other_patients, proxies, care, blocks, overrides)| ForeignRows {
                other_patients,
                proxies,
                care,
                blocks,
                overrides,
            },
        )
}

// ---------------------------------------------------------------------------------------------
// Properties

proptest! {
    #![proptest_config(config())]

    /// A denial never carries a basis or categories; an allowance always has a basis and never
    /// a denial.
    #[test]
    fn decision_fields_are_consistent(case in any_case()) {
        let d = case.decide();
        if d.is_allowed() {
            prop_assert!(d.basis().is_some(), "allowed without a basis: {d:?}");
            prop_assert!(d.denial().is_none(), "allowed with a denial: {d:?}");
        } else {
            prop_assert!(d.basis().is_none(), "denied with a basis: {d:?}");
            prop_assert!(d.denial().is_some(), "denied without a reason: {d:?}");
            prop_assert!(d.categories().is_empty(), "denied with categories: {d:?}");
        }
    }

    /// Auditors and administrators never see or change clinical data through `decide`.
    #[test]
    fn auditors_and_administrators_are_always_denied(
        case in case_with(
            actor_with_role(select(vec![Role::Auditor, Role::Administrator])),
            any_action(),
        )
    ) {
        let d = case.decide();
        prop_assert!(!d.is_allowed());
        if case.action != Action::WriteDemographics && case.actor.reach != Reach::OwnRecordOnly {
            prop_assert_eq!(d.denial(), Some(Denial::NoClinicalAccessForRole));
        }
    }

    /// System clients read nothing of a record; they deliver clinical data, learn which patient
    /// a CPR number names (to address it), and only the population register changes who a
    /// patient is.
    #[test]
    fn system_clients_only_write(
        case in case_with(actor_with(Just(Role::System), reach()), any_action()),
    ) {
        let d = case.decide();
        let Case { actor, action, facts, .. } = &case;
        let confined =
            actor.reach == Reach::OwnRecordOnly && actor.patient_id != Some(facts.patient_id);
        let expected = match action {
            Action::Write(c) => CLINICAL_SET.contains(c) && !confined,
            Action::WriteDemographics => actor.reach == Reach::PopulationRegister,
            Action::Identify => !confined,
            _ => false,
        };
        prop_assert_eq!(d.is_allowed(), expected, "{:?}", d);
    }

    /// Only a system client trusted as the population register changes demographics, whoever
    /// else asks and whatever ties they have to the patient.
    #[test]
    fn only_the_population_register_writes_demographics(
        case in case_with(any_actor(), Just(Action::WriteDemographics)),
    ) {
        let d = case.decide();
        let register = case.actor.role == Role::System && case.actor.reach == Reach::PopulationRegister;
        prop_assert_eq!(d.is_allowed(), register, "{:?}", d);
    }

    /// A `patient/` token reaches its own patient's record and nobody else's, proxies and care
    /// relationships notwithstanding.
    #[test]
    fn patient_tokens_reach_their_own_record_only(
        case in case_with(any_actor(), any_action()),
    ) {
        let mut case = case;
        case.actor.reach = Reach::OwnRecordOnly;
        let d = case.decide();
        if case.actor.patient_id != Some(case.facts.patient_id) {
            prop_assert!(!d.is_allowed());
            prop_assert_eq!(d.denial(), Some(Denial::OutsideTokenPatient));
        }
    }

    /// Facts are loaded per actor and patient (`gate::load_facts`): other users' proxies, care
    /// relationships and overrides, other patients' rows, and this patient's blocks of *other*
    /// clinicians and clinics may be in the database; they must not change this decision.
    /// Also checks that deciding on the loaded facts equals deciding on the facts as given.
    #[test]
    fn decisions_depend_only_on_the_actors_own_facts(
        case in any_case(),
        foreign in foreign_rows(),
    ) {
        let Case { actor, action, facts, settings, now } = &case;
        let (me, patient) = (actor.user_id, facts.patient_id);
        let own = World::of(actor, facts);
        let mut world = own.clone();
        for (id, birth_date, gp_clinic_id) in &foreign.other_patients {
            if *id != patient && world.patients.iter().all(|p| p.id != *id) {
                world.patients.push(PatientRow { id: *id, birth_date: *birth_date, gp_clinic_id: *gp_clinic_id });
            }
        }
        let foreign_tie = |p: &PatientId, u: &Uuid| *p != patient || *u != me;
        world.proxies.extend(
            foreign.proxies.iter().filter(|(p, u, _)| foreign_tie(p, u)).map(|(p, u, r)| {
                (*p, *u, ProxyFact { kind: r.kind, period: r.period.at(*now), revoked: r.revoked })
            }),
        );
        world.care.extend(
            foreign.care.iter().filter(|(p, u, _)| foreign_tie(p, u)).map(|(p, u, r)| (*p, *u, r.at(*now))),
        );
        world.overrides.extend(
            foreign.overrides.iter().filter(|(p, u, _)| foreign_tie(p, u)).map(|(p, u, o)| (*p, *u, *now + *o)),
        );
        world.blocks.extend(
            foreign
                .blocks
                .iter()
                .filter(|(p, b)| {
                    let aimed_at_me = match b.target {
                        Target::Clinician(id) => id == me,
                        Target::Clinic(id) => actor.clinic_id == Some(id),
                    };
                    *p != patient || !aimed_at_me
                })
                .map(|(p, b)| (*p, resolve_block(b, *now))),
        );

        let given = decide(actor, *action, facts, settings, *now);
        let loaded = decide(actor, *action, &own.load(actor, patient, *now), settings, *now);
        let crowded = decide(actor, *action, &world.load(actor, patient, *now), settings, *now);
        prop_assert_eq!(&given, &loaded, "deciding on loaded facts differs from the facts as given");
        prop_assert!(
            loaded.is_allowed() || !crowded.is_allowed(),
            "another actor's or patient's rows turned a denial into access: {:?} -> {:?}",
            loaded,
            crowded
        );
        prop_assert_eq!(loaded, crowded);
    }

    /// An active, unlifted block of the clinician or of their clinic denies them, whatever GP
    /// listing or care relationships exist, unless they hold an active emergency override.
    #[test]
    fn active_block_denies_a_clinician_without_override(
        case in case_with(actor_with_role(Just(Role::Clinician)), clinical_action()),
        period in active_rel_period(),
        on_clinic in any::<bool>(),
        listed in any::<bool>(),
        related in any::<bool>(),
        any_action in action(),
    ) {
        let mut case = case;
        let now = case.now;
        let target = match (on_clinic, case.actor.clinic_id) {
            (true, Some(clinic)) => Target::Clinic(clinic),
            _ => Target::Clinician(case.actor.user_id),
        };
        let block = resolve_block(&RelBlock { target, period, lifted: false }, now);
        case.facts.blocks.push(block);
        // No active override.
        case.facts.override_expires_at.retain(|&end| end <= now);
        // The strongest ties a clinician can have.
        if listed && case.actor.clinic_id.is_some() {
            case.facts.gp_clinic_id = case.actor.clinic_id;
        }
        if related {
            case.facts.care_relationships.push(Period { from: now - Duration::days(1), until: None });
        }

        let d = case.decide();
        prop_assert!(!d.is_allowed(), "blocked clinician allowed: {d:?}");
        prop_assert_eq!(d.denial(), Some(Denial::BlockedByPatient));

        // And for any action at all, never allowed.
        case.action = any_action;
        prop_assert!(!case.decide().is_allowed());
    }

    /// `BlockedByPatient` is only ever given when a block actually applies to this clinician.
    #[test]
    fn blocked_by_patient_only_when_a_block_applies(case in any_case()) {
        let d = case.decide();
        if d.denial() == Some(Denial::BlockedByPatient) {
            prop_assert!(
                case.facts.blocks.iter().any(|b| block_applies(b, &case.actor, case.now)),
                "BlockedByPatient without an applicable block"
            );
        }
    }

    /// An active override (expiry strictly after `now`) allows the clinician's clinical reads
    /// regardless of blocks, listings and relationships.
    #[test]
    fn active_override_allows_clinical_reads(
        case in case_with(actor_with_role(Just(Role::Clinician)), clinical_read()),
        ahead in non_negative_offset(),
        block_me in any::<bool>(),
    ) {
        let mut case = case;
        let now = case.now;
        case.facts.override_expires_at.push(now + ahead + Duration::seconds(1));
        if block_me {
            case.facts.blocks.push(BlockFact {
                clinician_id: Some(case.actor.user_id),
                clinic_id: None,
                period: Period { from: now - Duration::days(1), until: None },
                lifted: false,
            });
        }
        let d = case.decide();
        prop_assert!(d.is_allowed(), "override did not allow: {d:?}");
        prop_assert_eq!(d.basis(), Some(Basis::EmergencyOverride));
        prop_assert_eq!(d.categories(), CLINICAL_SET.to_vec());
    }

    /// An override whose expiry is at or before `now` contributes nothing: the decision is the
    /// same as without it, for every actor and action.
    #[test]
    fn expired_override_contributes_nothing(
        case in any_case(),
        expired in proptest::collection::vec(non_negative_offset(), 1..4),
    ) {
        let mut case = case;
        let now = case.now;
        case.facts.override_expires_at = expired.iter().map(|&back| now - back).collect();
        let with_expired = case.decide();
        case.facts.override_expires_at.clear();
        let without = case.decide();
        prop_assert_ne!(with_expired.basis(), Some(Basis::EmergencyOverride));
        prop_assert_eq!(with_expired, without);
    }

    /// A clinician never gets the access log (or any non-clinical category) and never manages
    /// consent, whatever the basis, including an emergency override.
    #[test]
    fn clinician_never_gets_non_clinical_data_or_consent(
        case in case_with(actor_with_role(Just(Role::Clinician)), action()),
    ) {
        let d = case.decide();
        prop_assert!(d.categories().iter().all(|c| CLINICAL_SET.contains(c)), "{d:?}");
        match case.action {
            Action::ManageConsent | Action::RequestRenewal => prop_assert!(!d.is_allowed()),
            Action::Read(c) | Action::Write(c) if !CLINICAL_SET.contains(&c) => {
                prop_assert!(!d.is_allowed())
            }
            _ => {}
        }
    }

    /// A patient user reads all of their own record (summary, every category, consent) and
    /// never writes it; no patient user ever writes any record. Asking for a renewal grants the
    /// medicine card only.
    #[test]
    fn patient_user_reads_own_record_fully_and_never_writes(
        case in case_with(actor_with_role(Just(Role::Patient)), action()),
        own in any::<bool>(),
    ) {
        let mut case = case;
        if own {
            case.actor.patient_id = Some(case.facts.patient_id);
        }
        let d = case.decide();
        let own_record = case.actor.patient_id == Some(case.facts.patient_id);
        if matches!(case.action, Action::Write(_) | Action::WriteDemographics) {
            prop_assert!(!d.is_allowed(), "patient user allowed to write: {d:?}");
        } else if case.action == Action::RequestRenewal {
            // Asking for a renewal is not writing: it grants the medicine card and nothing more.
            prop_assert!(d.categories().iter().all(|c| *c == Category::Prescriptions), "{d:?}");
            if own_record {
                prop_assert_eq!(d.basis(), Some(Basis::OwnRecord));
            }
        } else if own_record {
            prop_assert!(d.is_allowed());
            prop_assert_eq!(d.basis(), Some(Basis::OwnRecord));
            prop_assert!(Category::ALL.iter().all(|c| d.categories().contains(c)), "{d:?}");
        }
    }

    /// A guardian loses access on the child's 15th birthday and never sees a category the
    /// operator did not configure for guardians.
    #[test]
    fn guardian_access_ends_at_15_and_stays_within_configured_categories(
        case in case_with(actor_with_role(Just(Role::Patient)), action()),
        guardianship in active_rel_period(),
    ) {
        let mut case = case;
        // Make the actor someone else than the patient, holding an active guardianship.
        if case.actor.patient_id == Some(case.facts.patient_id) {
            case.actor.patient_id = None;
        }
        case.facts.proxies.push(ProxyFact {
            kind: ProxyKind::Guardian,
            period: guardianship.at(case.now),
            revoked: false,
        });
        let d = case.decide();
        let poa = holds_active(&case.facts, ProxyKind::PowerOfAttorney, case.now);
        if d.basis() == Some(Basis::Guardian) {
            prop_assert!(!is_15_or_older(case.facts.birth_date, case.now),
                "guardian access to a child of 15 or older: born {}, now {}", case.facts.birth_date, case.now);
            prop_assert!(
                d.categories().iter().all(|c| case.settings.guardian_categories.contains(c)),
                "guardian got {:?} with {:?} configured", d.categories(), case.settings.guardian_categories
            );
            if let Action::Read(c) = case.action {
                prop_assert!(case.settings.guardian_categories.contains(&c));
            }
        }
        if !poa && is_15_or_older(case.facts.birth_date, case.now) {
            prop_assert!(!d.is_allowed(), "guardian allowed on or after the 15th birthday: {d:?}");
            prop_assert_eq!(d.denial(), Some(Denial::ChildTurned15));
        }
        if !poa && !is_15_or_older(case.facts.birth_date, case.now) {
            // Below 15 a guardian reads, within the configured categories, and nothing else.
            match case.action {
                Action::ReadSummary | Action::Identify => prop_assert!(d.is_allowed()),
                Action::Read(c) => prop_assert_eq!(d.is_allowed(), case.settings.guardian_categories.contains(&c)),
                Action::Write(_)
                | Action::ManageConsent
                | Action::WriteDemographics
                | Action::RequestRenewal => prop_assert!(!d.is_allowed()),
            }
        }
    }

    /// Revoked, expired and not-yet-valid proxies grant nothing: the decision is the same as
    /// without them, and with only such proxies someone else's record is refused.
    #[test]
    fn inactive_proxies_grant_nothing(
        case in case_with(actor_with_role(Just(Role::Patient)), action()),
        inactive in proptest::collection::vec(
            (proxy_kind(), prop_oneof![
                // Revoked, with any period.
                rel_period().prop_map(|p| (p, true)),
                // Outside its period, revoked or not.
                (inactive_rel_period(), any::<bool>()),
            ]),
            1..4,
        ),
    ) {
        let mut case = case;
        if case.actor.patient_id == Some(case.facts.patient_id) {
            case.actor.patient_id = None;
        }
        let now = case.now;
        let dead: Vec<ProxyFact> = inactive
            .iter()
            .map(|(kind, (period, revoked))| ProxyFact { kind: *kind, period: period.at(now), revoked: *revoked })
            .collect();
        let live = case.facts.proxies.clone();

        case.facts.proxies = live.iter().cloned().chain(dead.iter().cloned()).collect();
        let with_dead = case.decide();
        case.facts.proxies = live;
        let without = case.decide();
        prop_assert_eq!(with_dead, without);

        case.facts.proxies = dead;
        let d = case.decide();
        prop_assert!(!d.is_allowed());
        prop_assert_eq!(d.denial(), Some(Denial::NotYourRecord));
    }

    /// A clinician with no active override, no active care relationship and whose clinic is
    /// not the patient's GP practice is refused.
    #[test]
    fn clinician_without_any_tie_is_refused(
        case in case_with(actor_with_role(Just(Role::Clinician)), action()),
    ) {
        let Case { actor, facts, now, .. } = &case;
        let listed = facts.gp_clinic_id.is_some() && facts.gp_clinic_id == actor.clinic_id;
        let related = facts.care_relationships.iter().any(|r| active(r, *now));
        if !listed && !related && !has_active_override(facts, *now) {
            prop_assert!(!case.decide().is_allowed());
        }
    }

    /// An allowed decision covers something, covers what was asked for, covers nothing beyond
    /// what its basis allows, lists no category twice, and its basis fits the actor's role.
    #[test]
    fn allowed_categories_are_non_empty_cover_the_request_and_stay_in_scope(case in any_case()) {
        let d = case.decide();
        if !d.is_allowed() {
            return Ok(());
        }
        let basis = d.basis().unwrap();
        // The one way to an empty list: a guardian's summary when the operator configured no
        // categories for guardians (access to nothing; see the report).
        let empty_guardian_config =
            basis == Basis::Guardian && case.settings.guardian_categories.is_empty();
        // Demographics are not a category of the record, nor is a source system's
        // identification of a patient.
        let demographics = case.action == Action::WriteDemographics
            || (case.action == Action::Identify && basis == Basis::SourceSystem);
        prop_assert!(!d.categories().is_empty() || empty_guardian_config || demographics, "allowed with nothing: {d:?}");
        let scope = scope_of(basis, &case.settings);
        prop_assert!(d.categories().iter().all(|c| scope.contains(c)),
            "{:?} beyond the scope of {:?}: {:?}", d.categories(), basis, scope);
        let mut unique = d.categories().to_vec();
        unique.sort_by_key(|c| c.as_str());
        unique.dedup();
        prop_assert_eq!(unique.len(), d.categories().len(), "duplicate categories");
        if let Action::Read(c) | Action::Write(c) = case.action {
            prop_assert!(d.categories().contains(&c), "asked for {c:?}, covered {:?}", d.categories());
        }
        match case.actor.role {
            Role::Patient => prop_assert!(matches!(basis, Basis::OwnRecord | Basis::Guardian | Basis::PowerOfAttorney)),
            Role::Clinician => prop_assert!(matches!(basis, Basis::GpListing | Basis::CareRelationship | Basis::EmergencyOverride)),
            Role::System => prop_assert!(matches!(basis, Basis::SourceSystem | Basis::PopulationRegister)),
            _ => prop_assert!(false, "non-clinical role allowed"),
        }
        if matches!(case.action, Action::Write(_) | Action::WriteDemographics) {
            prop_assert!(matches!(case.actor.role, Role::Clinician | Role::System), "only clinicians and source systems write");
        }
        if case.action == Action::ManageConsent {
            prop_assert_eq!(basis, Basis::OwnRecord, "only the patient manages consent");
        }
    }
}

/// The oracle's leap-day convention agrees with `age_on` (so the guardian property is testing
/// `decide`, not a disagreement about birthdays).
#[test]
fn fifteenth_birthday_oracle_agrees_with_age_on() {
    for (birth, fifteenth) in [
        ((2008, Month::February, 29), (2023, Month::March, 1)),
        ((2011, Month::November, 26), (2026, Month::November, 26)),
        ((2009, Month::December, 31), (2024, Month::December, 31)),
    ] {
        let birth = Date::from_calendar_date(birth.0, birth.1, birth.2).unwrap();
        let fifteenth = Date::from_calendar_date(fifteenth.0, fifteenth.1, fifteenth.2).unwrap();
        assert_eq!(fifteenth_birthday(birth), fifteenth);
        assert_eq!(age_on(birth, fifteenth), 15);
        assert_eq!(age_on(birth, fifteenth.previous_day().unwrap()), 14);
    }
}
