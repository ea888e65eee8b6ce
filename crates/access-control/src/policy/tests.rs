use time::macros::{date, datetime};
use time::Duration;

use super::*;
use crate::actor::Reach;

const NOW: OffsetDateTime = datetime!(2026-11-25 12:00 UTC);

fn clinic() -> Uuid {
    Uuid::from_u128(1)
}
fn other_clinic() -> Uuid {
    Uuid::from_u128(2)
}
fn patient_id() -> PatientId {
    PatientId(Uuid::from_u128(10))
}

fn facts() -> Facts {
    Facts {
        patient_id: patient_id(),
        birth_date: date!(1980 - 03 - 14),
        gp_clinic_id: Some(clinic()),
        proxies: vec![],
        care_relationships: vec![],
        blocks: vec![],
        override_expires_at: vec![],
    }
}

fn clinician(clinic: Uuid) -> Actor {
    Actor {
        user_id: Uuid::from_u128(100),
        name: "Dr. Test".into(),
        role: Role::Clinician,
        patient_id: None,
        clinic_id: Some(clinic),
        reach: Reach::WholeRole,
    }
}

fn patient_user(patient: PatientId) -> Actor {
    Actor {
        user_id: Uuid::from_u128(200),
        name: "Pat".into(),
        role: Role::Patient,
        patient_id: Some(patient),
        clinic_id: None,
        reach: Reach::WholeRole,
    }
}

fn open_from(days_ago: i64) -> Period {
    Period {
        from: NOW - Duration::days(days_ago),
        until: None,
    }
}

fn run(actor: &Actor, action: Action, facts: &Facts) -> Decision {
    decide(actor, action, facts, &PolicySettings::default(), NOW)
}

const READ_LABS: Action = Action::Read(Category::LabResults);

#[test]
fn patient_reads_own_record_but_cannot_write_it() {
    let me = patient_user(patient_id());
    let d = run(&me, READ_LABS, &facts());
    assert_eq!((d.is_allowed(), d.basis()), (true, Some(Basis::OwnRecord)));
    assert!(run(&me, Action::ManageConsent, &facts()).is_allowed());
    assert_eq!(
        run(&me, Action::Write(Category::Prescriptions), &facts()).denial(),
        Some(Denial::ReadOnlyAccess)
    );
}

#[test]
fn patient_cannot_read_another_patient() {
    let other = patient_user(PatientId(Uuid::from_u128(11)));
    let d = run(&other, READ_LABS, &facts());
    assert_eq!(d.denial(), Some(Denial::NotYourRecord));
    assert!(!d.is_allowed());
}

#[test]
fn guardian_sees_configured_categories_until_the_15th_birthday() {
    let parent = patient_user(PatientId(Uuid::from_u128(11)));
    let mut child = facts();
    child.birth_date = date!(2011 - 11 - 26);
    child.proxies = vec![ProxyFact {
        kind: ProxyKind::Guardian,
        period: open_from(5000),
        revoked: false,
    }];
    let d = run(&parent, Action::Read(Category::Prescriptions), &child);
    assert_eq!(d.basis(), Some(Basis::Guardian));
    assert!(!d.categories().contains(&Category::LabResults));
    assert_eq!(
        run(&parent, READ_LABS, &child).denial(),
        Some(Denial::CategoryNotForGuardians)
    );
    child.birth_date = date!(2011 - 11 - 25);
    assert_eq!(
        run(&parent, Action::Read(Category::Prescriptions), &child).denial(),
        Some(Denial::ChildTurned15)
    );
}

#[test]
fn guardian_categories_are_configurable() {
    let parent = patient_user(PatientId(Uuid::from_u128(11)));
    let mut child = facts();
    child.birth_date = date!(2018 - 01 - 01);
    child.proxies = vec![ProxyFact {
        kind: ProxyKind::Guardian,
        period: open_from(100),
        revoked: false,
    }];
    let settings = PolicySettings {
        guardian_categories: Category::ALL.to_vec(),
    };
    assert!(decide(&parent, READ_LABS, &child, &settings, NOW).is_allowed());
}

#[test]
fn power_of_attorney_only_while_valid_and_not_revoked() {
    let holder = patient_user(PatientId(Uuid::from_u128(11)));
    let mut f = facts();
    let valid = Period {
        from: NOW - Duration::days(1),
        until: Some(NOW + Duration::days(1)),
    };
    f.proxies = vec![ProxyFact {
        kind: ProxyKind::PowerOfAttorney,
        period: valid,
        revoked: false,
    }];
    assert_eq!(
        run(&holder, READ_LABS, &f).basis(),
        Some(Basis::PowerOfAttorney)
    );
    assert_eq!(
        run(&holder, Action::ManageConsent, &f).denial(),
        Some(Denial::ReadOnlyAccess)
    );
    f.proxies[0].revoked = true;
    assert_eq!(
        run(&holder, READ_LABS, &f).denial(),
        Some(Denial::NotYourRecord)
    );
    f.proxies[0] = ProxyFact {
        kind: ProxyKind::PowerOfAttorney,
        period: Period {
            from: NOW - Duration::days(9),
            until: Some(NOW - Duration::days(1)),
        },
        revoked: false,
    };
    assert!(!run(&holder, READ_LABS, &f).is_allowed());
    f.proxies[0].period = Period {
        from: NOW + Duration::days(1),
        until: None,
    };
    assert!(!run(&holder, READ_LABS, &f).is_allowed(), "not yet valid");
}

#[test]
fn clinician_of_the_listed_practice_is_allowed() {
    let d = run(&clinician(clinic()), READ_LABS, &facts());
    assert_eq!(d.basis(), Some(Basis::GpListing));
    assert!(run(
        &clinician(clinic()),
        Action::Write(Category::TreatmentPlans),
        &facts()
    )
    .is_allowed());
}

#[test]
fn clinician_without_listing_or_relationship_is_denied_with_override_offer() {
    let d = run(&clinician(other_clinic()), READ_LABS, &facts());
    assert_eq!(d.denial(), Some(Denial::NoTreatmentRelationship));
    assert!(d.denial().is_some_and(Denial::override_possible));
}

#[test]
fn care_relationship_counts_only_within_its_period() {
    let mut f = facts();
    f.care_relationships = vec![Period {
        from: NOW - Duration::days(10),
        until: Some(NOW + Duration::days(10)),
    }];
    assert_eq!(
        run(&clinician(other_clinic()), READ_LABS, &f).basis(),
        Some(Basis::CareRelationship)
    );
    f.care_relationships = vec![Period {
        from: NOW - Duration::days(10),
        until: Some(NOW - Duration::days(1)),
    }];
    assert!(!run(&clinician(other_clinic()), READ_LABS, &f).is_allowed());
    f.care_relationships = vec![Period {
        from: NOW + Duration::days(1),
        until: None,
    }];
    assert!(!run(&clinician(other_clinic()), READ_LABS, &f).is_allowed());
}

#[test]
fn block_on_clinician_or_clinic_denies_even_the_listed_practice() {
    let doctor = clinician(clinic());
    let mut f = facts();
    f.blocks = vec![BlockFact {
        clinician_id: Some(doctor.user_id),
        clinic_id: None,
        period: open_from(1),
        lifted: false,
    }];
    assert_eq!(
        run(&doctor, READ_LABS, &f).denial(),
        Some(Denial::BlockedByPatient)
    );
    f.blocks = vec![BlockFact {
        clinician_id: None,
        clinic_id: Some(clinic()),
        period: open_from(1),
        lifted: false,
    }];
    assert_eq!(
        run(&doctor, READ_LABS, &f).denial(),
        Some(Denial::BlockedByPatient)
    );
    f.blocks[0].lifted = true;
    assert!(run(&doctor, READ_LABS, &f).is_allowed());
    f.blocks[0] = BlockFact {
        clinician_id: Some(doctor.user_id),
        clinic_id: None,
        period: Period {
            from: NOW - Duration::days(5),
            until: Some(NOW - Duration::days(1)),
        },
        lifted: false,
    };
    assert!(
        run(&doctor, READ_LABS, &f).is_allowed(),
        "a block for a past period no longer holds"
    );
}

#[test]
fn block_of_another_clinician_does_not_apply() {
    let mut f = facts();
    f.blocks = vec![BlockFact {
        clinician_id: Some(Uuid::from_u128(999)),
        clinic_id: None,
        period: open_from(1),
        lifted: false,
    }];
    assert!(run(&clinician(clinic()), READ_LABS, &f).is_allowed());
}

#[test]
fn emergency_override_yields_to_nothing_but_expiry() {
    let doctor = clinician(other_clinic());
    let mut f = facts();
    f.blocks = vec![BlockFact {
        clinician_id: Some(doctor.user_id),
        clinic_id: None,
        period: open_from(1),
        lifted: false,
    }];
    f.override_expires_at = vec![NOW + Duration::minutes(30)];
    assert_eq!(
        run(&doctor, READ_LABS, &f).basis(),
        Some(Basis::EmergencyOverride)
    );
    f.override_expires_at = vec![NOW - Duration::minutes(1)];
    assert_eq!(
        run(&doctor, READ_LABS, &f).denial(),
        Some(Denial::BlockedByPatient)
    );
}

#[test]
fn clinicians_do_not_read_the_access_log_or_manage_consent() {
    assert!(!run(
        &clinician(clinic()),
        Action::Read(Category::AccessLog),
        &facts()
    )
    .is_allowed());
    assert!(!run(&clinician(clinic()), Action::ManageConsent, &facts()).is_allowed());
}

#[test]
fn auditors_and_administrators_see_nothing_clinical() {
    for role in [Role::Auditor, Role::Administrator] {
        let actor = Actor {
            user_id: Uuid::from_u128(300),
            name: "X".into(),
            role,
            patient_id: None,
            clinic_id: Some(clinic()),
            reach: Reach::WholeRole,
        };
        for category in Category::ALL {
            let d = run(&actor, Action::Read(category), &facts());
            assert_eq!(
                d.denial(),
                Some(Denial::NoClinicalAccessForRole),
                "{role} {category:?}"
            );
        }
    }
}

#[test]
fn summary_covers_what_the_basis_allows() {
    let parent = patient_user(PatientId(Uuid::from_u128(11)));
    let mut child = facts();
    child.birth_date = date!(2018 - 01 - 01);
    child.proxies = vec![ProxyFact {
        kind: ProxyKind::Guardian,
        period: open_from(100),
        revoked: false,
    }];
    let d = run(&parent, Action::ReadSummary, &child);
    assert_eq!(
        d.categories(),
        PolicySettings::default().guardian_categories
    );
    let d = run(&clinician(clinic()), Action::ReadSummary, &facts());
    assert!(d.is_allowed() && !d.categories().contains(&Category::AccessLog));
    assert!(!run(&clinician(other_clinic()), Action::ReadSummary, &facts()).is_allowed());
}
