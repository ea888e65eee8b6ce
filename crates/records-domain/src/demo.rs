//! A deterministic demo population: the same seed gives the same people, numbers and dates.
//! Names are Danish-style, CPR numbers valid, lab codes LOINC, medicines ATC.

use std::collections::HashSet;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use time::{Date, Duration, Month, OffsetDateTime, Time};
use uuid::Uuid;

use crate::cpr::Cpr;
use crate::model::*;

const SEED: u64 = 20_261_125;
const PATIENTS: usize = 240;
const DEMO_GIVEN: usize = 20;
const DEMO_FAMILY: usize = 24;

/// Given and family names for generated people. The demo draws from the first
/// twenty given and twenty-four family names, so that its fixed seed keeps giving
/// the same people; the bench, which makes far more people, draws from all of them.
pub const FEMALE_NAMES: &[&str] = &[
    "Anne", "Mette", "Kirsten", "Hanne", "Helle", "Susanne", "Lene", "Maria", "Marianne",
    "Camilla", "Ida", "Emma", "Sofie", "Freja", "Clara", "Karen", "Inge", "Birgitte", "Louise",
    "Julie", "Signe", "Astrid", "Laura", "Nanna",
];
/// See [`FEMALE_NAMES`].
pub const MALE_NAMES: &[&str] = &[
    "Bo", "Peter", "Jens", "Lars", "Henrik", "Søren", "Niels", "Morten", "Anders", "Mads",
    "Rasmus", "Jesper", "William", "Noah", "Oscar", "Emil", "Lucas", "Frederik", "Magnus", "Aksel",
    "Carl", "Viktor", "Ole", "Poul",
];
/// See [`FEMALE_NAMES`].
pub const FAMILY_NAMES: &[&str] = &[
    "Jensen",
    "Nielsen",
    "Hansen",
    "Pedersen",
    "Andersen",
    "Christensen",
    "Larsen",
    "Sørensen",
    "Rasmussen",
    "Jørgensen",
    "Petersen",
    "Madsen",
    "Kristensen",
    "Olsen",
    "Thomsen",
    "Poulsen",
    "Johansen",
    "Møller",
    "Mortensen",
    "Kjær",
    "Lund",
    "Holm",
    "Frederiksen",
    "Østergaard",
    "Jakobsen",
    "Dahl",
    "Bach",
    "Winther",
];

/// (LOINC code, display, unit, reference low, reference high, typical value, spread)
type LabTest = (&'static str, &'static str, &'static str, f64, f64, f64, f64);
pub const LAB_TESTS: &[LabTest] = &[
    ("718-7", "Haemoglobin", "mmol/L", 7.3, 10.5, 8.7, 0.6),
    ("4548-4", "HbA1c", "mmol/mol", 20.0, 48.0, 38.0, 6.0),
    ("2160-0", "Creatinine", "µmol/L", 45.0, 105.0, 78.0, 12.0),
    ("13457-7", "LDL cholesterol", "mmol/L", 0.0, 3.0, 2.8, 0.7),
    ("2951-2", "Sodium", "mmol/L", 137.0, 145.0, 140.0, 2.0),
    ("2823-3", "Potassium", "mmol/L", 3.5, 4.4, 4.0, 0.3),
    ("1988-5", "C-reactive protein", "mg/L", 0.0, 8.0, 4.0, 3.0),
    ("6690-2", "Leukocytes", "10^9/L", 3.5, 10.0, 6.5, 1.5),
    ("3016-3", "Thyrotropin (TSH)", "mIU/L", 0.3, 4.0, 1.8, 0.7),
];

/// (ATC code, name, dosage)
pub const MEDICINES: &[(&str, &str, &str)] = &[
    (
        "C10AA05",
        "Atorvastatin 20 mg tablet",
        "1 tablet in the evening",
    ),
    (
        "A10BA02",
        "Metformin 500 mg tablet",
        "1 tablet 2 times daily with meals",
    ),
    (
        "C09AA05",
        "Ramipril 5 mg capsule",
        "1 capsule in the morning",
    ),
    (
        "N02BE01",
        "Paracetamol 500 mg tablet",
        "2 tablets up to 4 times daily as needed",
    ),
    (
        "H03AA01",
        "Levothyroxine 50 microgram tablet",
        "1 tablet in the morning before breakfast",
    ),
    (
        "R03AC02",
        "Salbutamol 0.1 mg/dose inhaler",
        "1-2 puffs as needed, at most 8 daily",
    ),
    ("C07AB02", "Metoprolol 50 mg depot tablet", "1 tablet daily"),
    (
        "J01CE02",
        "Phenoxymethylpenicillin 1 MIE tablet",
        "1 tablet 4 times daily for 7 days",
    ),
    ("N06AB06", "Sertraline 50 mg tablet", "1 tablet daily"),
    (
        "B01AC06",
        "Acetylsalicylic acid 75 mg tablet",
        "1 tablet daily",
    ),
    (
        "A02BC01",
        "Omeprazole 20 mg capsule",
        "1 capsule daily before breakfast",
    ),
];

/// (title, description, goals with targets, activities)
pub type PlanTemplate = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static [&'static str],
);
/// Care plans a GP might write; the benchmark's population draws from the same list.
pub const PLANS: &[PlanTemplate] = &[
    (
        "Type 2 diabetes follow-up",
        "Annual control and quarterly HbA1c while treatment is adjusted.",
        &[
            ("HbA1c below 53 mmol/mol", "< 53 mmol/mol"),
            ("Weight loss of 5 %", "-5 % body weight"),
        ],
        &[
            "HbA1c every 3 months",
            "Annual foot and eye examination",
            "Dietitian course",
        ],
    ),
    (
        "Hypertension control",
        "Home blood pressure measurements and medication review.",
        &[("Home blood pressure below 135/85", "< 135/85 mmHg")],
        &[
            "Home measurements for one week before each visit",
            "Kidney function and potassium yearly",
        ],
    ),
    (
        "Asthma action plan",
        "Step-wise treatment with follow-up of symptom control.",
        &[
            ("No night-time symptoms", "0 nights per month"),
            ("Full activity in sports", ""),
        ],
        &["Inhaler technique check", "Spirometry yearly"],
    ),
    (
        "Rehabilitation after knee surgery",
        "Municipal physiotherapy after total knee replacement.",
        &[("Walk 2 km without pain", "2 km")],
        &[
            "Physiotherapy twice weekly for 12 weeks",
            "Follow-up with orthopaedic surgeon",
        ],
    ),
];

#[derive(Debug, Clone)]
pub struct Population {
    pub clinics: Vec<Clinic>,
    pub patients: Vec<Patient>,
    /// (guardian, child under 15)
    pub guardianships: Vec<(PatientId, PatientId)>,
    pub lab_results: Vec<LabResult>,
    pub prescriptions: Vec<Prescription>,
    pub plans: Vec<TreatmentPlan>,
    pub diagnoses: Vec<Diagnosis>,
    pub allergies: Vec<Allergy>,
    pub vaccinations: Vec<Vaccination>,
    pub contacts: Vec<Contact>,
    pub procedures: Vec<Procedure>,
    pub reports: Vec<Report>,
    pub imaging: Vec<ImagingStudy>,
}

/// The people the demo logins belong to, in the order `generate` creates them.
pub mod named {
    pub const ANNE: usize = 0;
    pub const EMIL: usize = 1;
    pub const BO: usize = 2;
    pub const KAREN: usize = 3;
}

pub const DEMO_SOURCE: &str = "urn:portal:demo";

/// The reference day the population is generated around (ages, result dates).
pub fn reference_day() -> Date {
    Date::from_calendar_date(2026, Month::November, 1).unwrap_or(Date::MIN)
}

pub fn generate() -> Population {
    let mut g = Generator {
        rng: ChaCha8Rng::seed_from_u64(SEED),
        used_cprs: HashSet::new(),
    };
    g.population()
}

struct Generator {
    rng: ChaCha8Rng,
    used_cprs: HashSet<String>,
}

impl Generator {
    fn uuid(&mut self) -> Uuid {
        uuid::Builder::from_random_bytes(self.rng.gen()).into_uuid()
    }

    fn population(&mut self) -> Population {
        let clinics = vec![
            Clinic {
                id: self.uuid(),
                name: "Lægehuset Nørrebro".into(),
                kind: ClinicKind::GeneralPractice,
                address: "Nørrebrogade 100, 2200 København N".into(),
                phone: "+45 35 00 00 01".into(),
            },
            Clinic {
                id: self.uuid(),
                name: "Lægerne Aarhus C".into(),
                kind: ClinicKind::GeneralPractice,
                address: "Søndergade 12, 8000 Aarhus C".into(),
                phone: "+45 86 00 00 02".into(),
            },
        ];
        let (a, b) = (clinics[0].id, clinics[1].id);
        let mut patients = vec![
            self.person("Anne", "Jensen", date(1980, 3, 14), Sex::Female, a),
            self.person("Emil", "Jensen", date(2016, 5, 9), Sex::Male, a),
            self.person("Bo", "Nielsen", date(1975, 9, 2), Sex::Male, b),
            self.person("Karen", "Poulsen", date(1941, 1, 30), Sex::Female, a),
        ];
        let mut guardianships = vec![(patients[named::ANNE].id, patients[named::EMIL].id)];
        while patients.len() < PATIENTS {
            let clinic = if self.rng.gen_bool(0.5) { a } else { b };
            let family = *FAMILY_NAMES[..DEMO_FAMILY]
                .choose(&mut self.rng)
                .unwrap_or(&"Jensen");
            let parent = self.random_person(family, 1950, 1995, clinic);
            let parent_id = parent.id;
            patients.push(parent);
            if self.rng.gen_bool(0.3) {
                for _ in 0..self.rng.gen_range(1..=2) {
                    let child = self.random_person(family, 2013, 2024, clinic);
                    guardianships.push((parent_id, child.id));
                    patients.push(child);
                }
            }
        }
        let mut pop = Population {
            clinics,
            patients,
            guardianships,
            lab_results: Vec::new(),
            prescriptions: Vec::new(),
            plans: Vec::new(),
            diagnoses: Vec::new(),
            allergies: Vec::new(),
            vaccinations: Vec::new(),
            contacts: Vec::new(),
            procedures: Vec::new(),
            reports: Vec::new(),
            imaging: Vec::new(),
        };
        for i in 0..pop.patients.len() {
            let patient = pop.patients[i].clone();
            let rich = i == named::ANNE || i == named::BO || i == named::KAREN;
            self.labs_for(&patient, rich, &mut pop.lab_results);
            self.prescriptions_for(&patient, rich, &mut pop.prescriptions);
            if rich || self.rng.gen_bool(0.25) {
                self.plan_for(&patient, &mut pop.plans);
            }
        }
        self.hold_back_newest(pop.patients[named::ANNE].id, &mut pop.lab_results);
        // Drawn after everything above, so that the rest of the population stays as it was.
        for i in 0..pop.patients.len() {
            let patient = pop.patients[i].clone();
            let rich = i == named::ANNE || i == named::BO || i == named::KAREN;
            self.diagnoses_for(&patient, rich, &mut pop.diagnoses);
            self.allergies_for(&patient, rich, &mut pop.allergies);
            self.vaccinations_for(&patient, &mut pop.vaccinations);
            if rich || self.rng.gen_bool(0.3) {
                self.contacts_for(&patient, &mut pop);
            }
        }
        pop
    }

    fn diagnoses_for(&mut self, patient: &Patient, rich: bool, out: &mut Vec<Diagnosis>) {
        if patient.age_on(reference_day()) < 15 {
            return;
        }
        let count = if rich { 3 } else { self.rng.gen_range(0..=2) };
        let mut picks: Vec<_> = DIAGNOSES.iter().collect();
        picks.shuffle(&mut self.rng);
        for (n, &&(code, display)) in picks.iter().take(count).enumerate() {
            let onset = reference_day() - Duration::days(self.rng.gen_range(60..4000));
            let resolved = n == 2;
            out.push(Diagnosis {
                id: self.uuid(),
                patient_id: patient.id,
                code_system: "http://snomed.info/sct".into(),
                code: code.into(),
                display: display.into(),
                clinical_status: if resolved {
                    ClinicalStatus::Resolved
                } else {
                    ClinicalStatus::Active
                },
                onset_at: Some(at_ten(onset)),
                abated_at: resolved.then(|| at_ten(onset + Duration::days(30))),
                recorded_at: Some(at_ten(onset)),
                recorder: "Dr. Mette Hansen".into(),
                version: 1,
                source: demo_source(format!("dx-{}", out.len())),
            });
        }
    }

    fn allergies_for(&mut self, patient: &Patient, rich: bool, out: &mut Vec<Allergy>) {
        if !rich && !self.rng.gen_bool(0.2) {
            return;
        }
        let &(code, substance, category, criticality, manifestation, severity) =
            ALLERGIES.choose(&mut self.rng).unwrap_or(&ALLERGIES[0]);
        let recorded = reference_day() - Duration::days(self.rng.gen_range(100..3000));
        out.push(Allergy {
            id: self.uuid(),
            patient_id: patient.id,
            code_system: "http://snomed.info/sct".into(),
            code: code.into(),
            substance: substance.into(),
            clinical_status: ClinicalStatus::Active,
            criticality: Some(criticality),
            category: Some(category.into()),
            reactions: vec![Reaction {
                manifestation: manifestation.into(),
                severity: Some(severity.into()),
            }],
            recorded_at: Some(at_ten(recorded)),
            recorder: "Dr. Mette Hansen".into(),
            version: 1,
            source: demo_source(format!("al-{}", out.len())),
        });
    }

    /// A GP visit a few weeks ago with its blood tests' report, a planned check-up, and for
    /// some an emergency visit with a procedure years back.
    fn contacts_for(&mut self, patient: &Patient, pop: &mut Population) {
        let today = reference_day();
        let recent = today - Duration::days(self.rng.gen_range(5..60));
        let planned = today + Duration::days(self.rng.gen_range(7..40));
        for (day, status, what, why) in [
            (
                recent,
                ContactStatus::Finished,
                "General examination",
                Some("Follow-up of blood tests"),
            ),
            (planned, ContactStatus::Planned, "Check-up", None),
        ] {
            pop.contacts.push(Contact {
                id: self.uuid(),
                patient_id: patient.id,
                type_system: String::new(),
                type_code: what.to_lowercase().replace(' ', "-"),
                type_display: what.into(),
                class: "AMB".into(),
                status,
                started_at: at_ten(day),
                ended_at: (status == ContactStatus::Finished)
                    .then(|| at_ten(day) + Duration::minutes(15)),
                place: "Lægehuset Nørrebro".into(),
                practitioner: "Dr. Mette Hansen".into(),
                reason: why.map(str::to_string),
                version: 1,
                source: demo_source(format!("enc-{}", pop.contacts.len())),
            });
        }
        pop.reports.push(Report {
            id: self.uuid(),
            patient_id: patient.id,
            code_system: "http://loinc.org".into(),
            code: "24323-8".into(),
            display: "Blood tests at the GP".into(),
            category: Some("Laboratory".into()),
            status: ReportStatus::Final,
            effective_at: at_ten(recent),
            issued_at: Some(at_ten(recent) + Duration::hours(6)),
            performer: "Klinisk Biokemisk Afdeling, Rigshospitalet".into(),
            conclusion: Some("No change since last time; continue as planned.".into()),
            results: vec!["HbA1c".into(), "Cholesterol".into(), "Creatinine".into()],
            version: 1,
            source: demo_source(format!("rep-{}", pop.reports.len())),
        });
        let x_ray = today - Duration::days(self.rng.gen_range(100..900));
        pop.imaging.push(ImagingStudy {
            id: self.uuid(),
            patient_id: patient.id,
            status: ImagingStatus::Available,
            started_at: at_ten(x_ray),
            modality: "Digital Radiography".into(),
            body_site: Some("Chest".into()),
            description: Some("Chest X-ray, two views".into()),
            series: 1,
            instances: 2,
            performer: "Radiologisk Afdeling, Bispebjerg Hospital".into(),
            // A DICOM UID made from a UUID (the 2.25 arc).
            identifier: Some(format!("urn:oid:2.25.{}", self.uuid().as_u128())),
            version: 1,
            source: demo_source(format!("img-{}", pop.imaging.len())),
        });
        if self.rng.gen_bool(0.5) {
            let years_ago = today - Duration::days(self.rng.gen_range(400..3000));
            pop.contacts.push(Contact {
                id: self.uuid(),
                patient_id: patient.id,
                type_system: String::new(),
                type_code: "emergency".into(),
                type_display: "Emergency room visit".into(),
                class: "EMER".into(),
                status: ContactStatus::Finished,
                started_at: at_ten(years_ago),
                ended_at: Some(at_ten(years_ago) + Duration::hours(3)),
                place: "Akutmodtagelsen, Bispebjerg Hospital".into(),
                practitioner: "Dr. Jonas Berg".into(),
                reason: Some("Cut on the left hand".into()),
                version: 1,
                source: demo_source(format!("enc-{}", pop.contacts.len())),
            });
            pop.procedures.push(Procedure {
                id: self.uuid(),
                patient_id: patient.id,
                code_system: "http://snomed.info/sct".into(),
                code: "288086009".into(),
                display: "Suture of wound".into(),
                status: ProcedureStatus::Completed,
                performed_at: at_ten(years_ago) + Duration::hours(1),
                performed_until: None,
                performer: "Dr. Jonas Berg".into(),
                reason: Some("Cut on the left hand".into()),
                version: 1,
                source: demo_source(format!("proc-{}", pop.procedures.len())),
            });
        }
    }

    /// The Danish childhood programme for children, flu and COVID-19 for adults.
    fn vaccinations_for(&mut self, patient: &Patient, out: &mut Vec<Vaccination>) {
        let today = reference_day();
        let child = patient.age_on(today) < 15;
        let plan: Vec<(usize, Date)> = if child {
            [(0, 3), (0, 5), (0, 12), (1, 15), (1, 48)]
                .iter()
                .map(|&(vaccine, months)| {
                    (vaccine, patient.birth_date + Duration::days(months * 30))
                })
                .collect()
        } else {
            let flu = today - Duration::days(self.rng.gen_range(20..90));
            let covid = today - Duration::days(self.rng.gen_range(400..1200));
            vec![(2, flu), (3, covid)]
        };
        for (vaccine, day) in plan.into_iter().filter(|(_, d)| *d <= today) {
            let (code, name) = VACCINES[vaccine];
            out.push(Vaccination {
                id: self.uuid(),
                patient_id: patient.id,
                vaccine_system: "http://www.whocc.no/atc".into(),
                vaccine_code: code.into(),
                vaccine_name: name.into(),
                status: VaccinationStatus::Completed,
                occurred_at: at_ten(day),
                lot_number: Some(format!("LOT{:05}", self.rng.gen_range(0..100_000))),
                site: Some(if child { "Thigh" } else { "Left upper arm" }.into()),
                performer: if child {
                    "Dr. Mette Hansen"
                } else {
                    "Lægehuset Nørrebro"
                }
                .into(),
                version: 1,
                source: demo_source(format!("vx-{}", out.len())),
            });
        }
    }

    fn random_person(&mut self, family: &str, from: i32, to: i32, clinic: Uuid) -> Patient {
        let sex = if self.rng.gen_bool(0.5) {
            Sex::Female
        } else {
            Sex::Male
        };
        let names = if sex == Sex::Female {
            &FEMALE_NAMES[..DEMO_GIVEN]
        } else {
            &MALE_NAMES[..DEMO_GIVEN]
        };
        let given = *names.choose(&mut self.rng).unwrap_or(&"Alex");
        let year = self.rng.gen_range(from..=to);
        let birth = date(year, self.rng.gen_range(1..=12), self.rng.gen_range(1..=28));
        self.person(given, family, birth, sex, clinic)
    }

    fn person(
        &mut self,
        given: &str,
        family: &str,
        birth: Date,
        sex: Sex,
        clinic: Uuid,
    ) -> Patient {
        let cpr = self.cpr_for(birth, sex);
        Patient {
            id: PatientId(self.uuid()),
            cpr,
            given_name: given.into(),
            family_name: family.into(),
            birth_date: birth,
            sex,
            gp_clinic_id: Some(clinic),
            original_identifier: None,
            version: 1,
        }
    }

    /// A CPR number whose seventh digit puts the birth year in the right century and whose
    /// last digit matches the sex.
    fn cpr_for(&mut self, birth: Date, sex: Sex) -> Cpr {
        loop {
            let seventh = if birth.year() < 2000 {
                self.rng.gen_range(0..=3)
            } else {
                4
            };
            let middle = self.rng.gen_range(0..=99);
            let mut last = self.rng.gen_range(0..=9);
            if (last % 2 == 1) != (sex == Sex::Male) {
                last = (last + 1) % 10;
            }
            let digits = format!(
                "{:02}{:02}{:02}{}{:02}{}",
                birth.day(),
                birth.month() as u8,
                birth.year() % 100,
                seventh,
                middle,
                last
            );
            if let Ok(cpr) = Cpr::parse(&digits) {
                if self.used_cprs.insert(digits) {
                    return cpr;
                }
            }
        }
    }

    fn labs_for(&mut self, patient: &Patient, rich: bool, out: &mut Vec<LabResult>) {
        let day = reference_day();
        let count = if rich {
            LAB_TESTS.len()
        } else {
            self.rng.gen_range(2..=4)
        };
        let mut tests: Vec<&LabTest> = LAB_TESTS.iter().collect();
        tests.shuffle(&mut self.rng);
        for &&(code, display, unit, low, high, typical, spread) in tests.iter().take(count) {
            let samples = if rich { 8 } else { self.rng.gen_range(3..=7) };
            let drift = self.rng.gen_range(-1.0..1.5) * spread / samples as f64;
            let mut value = typical + self.rng.gen_range(-spread..spread) / 2.0;
            for n in 0..samples {
                let days_back = (samples - n) as i64 * self.rng.gen_range(150..230);
                let effective_day = day - Duration::days(days_back);
                let effective = effective_day
                    .with_time(Time::from_hms(8, 30, 0).unwrap_or(Time::MIDNIGHT))
                    .assume_utc()
                    + Duration::minutes(self.rng.gen_range(0..180));
                value = (value + drift + self.rng.gen_range(-spread..spread) / 3.0).max(0.1);
                let rounded = (value * 10.0).round() / 10.0;
                let lab = if self.rng.gen_bool(0.7) {
                    "Klinisk Biokemisk Afdeling, Rigshospitalet"
                } else {
                    "Klinisk Biokemisk Afdeling, Aarhus Universitetshospital"
                };
                let issued = effective + Duration::hours(self.rng.gen_range(4..30));
                out.push(LabResult {
                    id: self.uuid(),
                    patient_id: patient.id,
                    category: "laboratory".into(),
                    code_system: "http://loinc.org".into(),
                    code: code.into(),
                    display: display.into(),
                    value: LabValue::Numeric(rounded),
                    unit: Some(unit.into()),
                    reference_low: Some(low),
                    reference_high: Some(high),
                    interpretation: Interpretation::classify(rounded, Some(low), Some(high)),
                    status: ResultStatus::Final,
                    effective_at: effective,
                    issued_at: issued,
                    performing_lab: lab.into(),
                    released_at: issued,
                    panel: None,
                    identifier: None,
                    version: 1,
                    source: Source {
                        system: DEMO_SOURCE.into(),
                        id: format!("obs-{}", out.len()),
                    },
                });
            }
        }
    }

    /// The newest result of the first demo patient waits for a talk with the GP.
    fn hold_back_newest(&mut self, patient: PatientId, results: &mut [LabResult]) {
        if let Some(newest) = results
            .iter_mut()
            .filter(|r| r.patient_id == patient)
            .max_by_key(|r| r.effective_at)
        {
            newest.released_at = date(2099, 1, 1).midnight().assume_utc();
        }
    }

    fn prescriptions_for(&mut self, patient: &Patient, rich: bool, out: &mut Vec<Prescription>) {
        let count = if rich { 4 } else { self.rng.gen_range(0..=3) };
        let mut meds: Vec<_> = MEDICINES.iter().collect();
        meds.shuffle(&mut self.rng);
        for (n, &&(code, name, dosage)) in meds.iter().take(count).enumerate() {
            let start = reference_day() - Duration::days(self.rng.gen_range(30..1500));
            let past = n % 2 == 1;
            let (status, until, reason) = if past {
                let until = start + Duration::days(self.rng.gen_range(7..300));
                (PrescriptionStatus::Completed, Some(until), None)
            } else {
                (PrescriptionStatus::Active, None, None)
            };
            let id = self.uuid();
            out.push(Prescription {
                id,
                patient_id: patient.id,
                medication_system: "http://www.whocc.no/atc".into(),
                medication_code: code.into(),
                medication_name: name.into(),
                dosage_text: dosage.into(),
                status,
                authored_at: start.midnight().assume_utc() + Duration::hours(10),
                prescriber: "Dr. Mette Hansen".into(),
                valid_from: start,
                valid_until: until,
                stop_reason: reason,
                version: 1,
                source: Source {
                    system: DEMO_SOURCE.into(),
                    id: format!("rx-{}", out.len()),
                },
            });
        }
    }

    fn plan_for(&mut self, patient: &Patient, out: &mut Vec<TreatmentPlan>) {
        let &(title, description, goals, activities) =
            PLANS.choose(&mut self.rng).unwrap_or(&PLANS[0]);
        let start = reference_day() - Duration::days(self.rng.gen_range(20..700));
        out.push(TreatmentPlan {
            id: self.uuid(),
            patient_id: patient.id,
            title: title.into(),
            description: description.into(),
            status: PlanStatus::Active,
            period_start: start,
            period_end: None,
            author: "Dr. Mette Hansen".into(),
            updated_at: OffsetDateTime::new_utc(start, Time::MIDNIGHT),
            version: 1,
            goals: goals
                .iter()
                .map(|&(d, t)| Goal {
                    description: d.into(),
                    target: (!t.is_empty()).then(|| t.into()),
                    status: GoalStatus::Active,
                })
                .collect(),
            activities: activities
                .iter()
                .enumerate()
                .map(|(i, &d)| Activity {
                    description: d.into(),
                    status: if i == 0 {
                        ActivityStatus::InProgress
                    } else {
                        ActivityStatus::Scheduled
                    },
                })
                .collect(),
            source: Source {
                system: DEMO_SOURCE.into(),
                id: format!("plan-{}", out.len()),
            },
        });
    }
}

fn at_ten(day: Date) -> OffsetDateTime {
    day.midnight().assume_utc() + Duration::hours(10)
}

fn demo_source(id: String) -> Source {
    Source {
        system: DEMO_SOURCE.into(),
        id,
    }
}

/// SNOMED CT code and name.
const DIAGNOSES: &[(&str, &str)] = &[
    ("59621000", "Essential hypertension"),
    ("44054006", "Type 2 diabetes mellitus"),
    ("195967001", "Asthma"),
    ("40930008", "Hypothyroidism"),
    ("37796009", "Migraine"),
    ("10509002", "Acute bronchitis"),
];

/// SNOMED CT code, substance, category, criticality, reaction and its severity.
const ALLERGIES: &[(&str, &str, &str, Criticality, &str, &str)] = &[
    (
        "91936005",
        "Penicillin",
        "medication",
        Criticality::High,
        "Hives",
        "moderate",
    ),
    (
        "300913006",
        "Shellfish",
        "food",
        Criticality::High,
        "Anaphylaxis",
        "severe",
    ),
    (
        "418689008",
        "Grass pollen",
        "environment",
        Criticality::Low,
        "Runny nose",
        "mild",
    ),
    (
        "232347008",
        "Cat dander",
        "environment",
        Criticality::Low,
        "Sneezing",
        "mild",
    ),
];

/// ATC code and the name the Danish vaccination register uses.
const VACCINES: &[(&str, &str)] = &[
    (
        "J07CA06",
        "DiTeKiPol/Act-Hib (diphtheria, tetanus, pertussis, polio, Hib)",
    ),
    ("J07BD52", "MFR (measles, mumps, rubella)"),
    ("J07BB02", "Influenza"),
    ("J07BN01", "COVID-19 (Comirnaty)"),
];

fn date(year: i32, month: u8, day: u8) -> Date {
    Month::try_from(month)
        .ok()
        .and_then(|m| Date::from_calendar_date(year, m, day).ok())
        .unwrap_or(Date::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn population_is_deterministic_and_realistic() {
        let a = generate();
        let b = generate();
        assert_eq!(a.patients.len(), b.patients.len());
        assert!(a.patients.len() >= 200);
        assert_eq!(a.patients[0].cpr, b.patients[0].cpr);
        assert_eq!(a.lab_results.len(), b.lab_results.len());
        assert_eq!(a.clinics.len(), 2);
        let cprs: HashSet<_> = a
            .patients
            .iter()
            .map(|p| p.cpr.digits().to_string())
            .collect();
        assert_eq!(cprs.len(), a.patients.len(), "CPR numbers are unique");
        for p in &a.patients {
            assert_eq!(p.cpr.birth_date(), p.birth_date);
            assert_eq!(Sex::from_cpr(&p.cpr), p.sex);
        }
        let day = reference_day();
        assert!(a.guardianships.len() > 10);
        for (_, child) in &a.guardianships {
            let child = a.patients.iter().find(|p| p.id == *child).unwrap();
            assert!(child.age_on(day) < 15);
        }
        assert!(a
            .prescriptions
            .iter()
            .any(|p| p.status == PrescriptionStatus::Active));
        assert!(a
            .prescriptions
            .iter()
            .any(|p| p.status == PrescriptionStatus::Completed));
        assert!(!a.plans.is_empty());
    }
}
