//! The clinician's pages: lookup, the record with its actions, the override and plan forms.

use maud::{html, Markup};
use records_domain::db::date_text;
use records_domain::model::{
    Allergy, Contact, Diagnosis, LabResult, Patient, PatientId, Prescription, TreatmentPlan,
    Vaccination,
};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::components::{
    day, flag, history_table, lab_table, plan_card, prescription_table, trend_chart,
};
use records_domain::store::renewals::RenewalRequest;

use super::entries::{overview_section, table, Listed};
use super::layout::{csrf_field, page, Frame, RecordBanner};
use crate::auth::CurrentUser;
use crate::forms::{LookupForm, PlanForm, PrescriptionForm};

pub struct Hit {
    pub patient: Patient,
    pub may_open: bool,
    pub basis: &'static str,
}

fn record_page(
    title: &str,
    user: &CurrentUser,
    csrf: &str,
    banner: RecordBanner,
    patient: PatientId,
    body: Markup,
) -> Markup {
    let frame = Frame {
        user,
        csrf,
        record: Some(banner),
    };
    let base = format!("/clinician/patients/{}", patient.0);
    page(
        title,
        Some(&frame),
        html! {
            nav.record-tabs aria-label="Record" {
                ul {
                    li { a href=(base) { "Overview" } }
                    li { a href={ (base) "/labs" } { "Lab results" } }
                    li { a href={ (base) "/prescriptions" } { "Prescriptions" } }
                    li { a href={ (base) "/plans" } { "Treatment plans" } }
                    li { a href={ (base) "/diagnoses" } { "Diagnoses" } }
                    li { a href={ (base) "/allergies" } { "Allergies" } }
                    li { a href={ (base) "/vaccinations" } { "Vaccinations" } }
                    li { a href={ (base) "/contacts" } { "Contacts" } }
                    li { a href={ (base) "/procedures" } { "Procedures" } }
                    li { a href={ (base) "/reports" } { "Reports" } }
                    li { a href={ (base) "/imaging" } { "Imaging" } }
                }
            }
            (body)
        },
    )
}

pub fn lookup(
    user: &CurrentUser,
    csrf: &str,
    form: Option<&LookupForm>,
    outcome: Option<Result<Vec<Hit>, String>>,
) -> Markup {
    let empty = LookupForm::default();
    let form = form.unwrap_or(&empty);
    let frame = Frame {
        user,
        csrf,
        record: None,
    };
    page(
        "Find a patient",
        Some(&frame),
        html! {
            form method="post" action="/clinician/lookup" {
                (csrf_field(csrf))
                fieldset {
                    legend { "By CPR number" }
                    label for="cpr" { "CPR number (with or without dash)" }
                    input #cpr name="cpr" value=(form.cpr) inputmode="numeric" autocomplete="off" maxlength="11";
                }
                fieldset {
                    legend { "Or by name and birth date" }
                    label for="name" { "Name" }
                    input #name name="name" value=(form.name) autocomplete="off" maxlength="100";
                    label for="birth_date" { "Birth date" }
                    input #birth_date type="date" name="birth_date" value=(form.birth_date);
                }
                button type="submit" { "Search" }
            }
            @match outcome {
                Some(Err(problem)) => { p.notice.error role="alert" { (problem) } }
                Some(Ok(hits)) => {
                    section {
                        h2 { "Results" }
                        @if hits.is_empty() { p.hint { "No patient matches." } }
                        ul.hits {
                            @for hit in &hits {
                                li.card {
                                    @if hit.may_open {
                                        a href={ "/clinician/patients/" (hit.patient.id.0) } { strong { (hit.patient.full_name()) } }
                                        " · CPR " (hit.patient.cpr.formatted()) " · " (hit.basis)
                                    } @else {
                                        strong { (hit.patient.full_name()) } " · born " (hit.patient.birth_date.year())
                                        " · " (hit.basis)
                                        " " a.button href={ "/clinician/patients/" (hit.patient.id.0) "/override" } { "Emergency access" }
                                    }
                                }
                            }
                        }
                    }
                }
                None => {}
            }
        },
    )
}

/// The refusal page for a clinician who may break the glass.
pub fn override_offer(message: &str, patient: PatientId) -> Markup {
    page(
        "No access to this record",
        None,
        html! {
            p.notice.error role="alert" { (message) }
            p { "In an emergency you can open the record anyway. You must give a reason; the access is time-limited, reviewed by an auditor and shown to the patient." }
            p { a.button href={ "/clinician/patients/" (patient.0) "/override" } { "Emergency access" } }
            p { a href="/clinician" { "Back to patient search" } }
        },
    )
}

pub fn override_form(
    user: &CurrentUser,
    csrf: &str,
    patient: &Patient,
    window: Duration,
    refused: Option<(&str, &str)>,
) -> Markup {
    let frame = Frame {
        user,
        csrf,
        record: None,
    };
    page(
        "Emergency access",
        Some(&frame),
        html! {
            p { "You are about to open the record of " strong { (patient.full_name()) } " (born " (patient.birth_date.year()) ") without a treatment relationship. Access lasts " (window.whole_minutes()) " minutes, overrides any block by the patient, is flagged for review and shown to the patient." }
            @if let Some((problem, _)) = refused { p.notice.error role="alert" { (problem) } }
            form method="post" action={ "/clinician/patients/" (patient.id.0) "/override" } {
                (csrf_field(csrf))
                label for="reason" { "Reason (at least 20 characters and three different words)" }
                textarea #reason name="reason" required minlength="20" maxlength="1000" rows="4" { (refused.map_or("", |r| r.1)) }
                button.danger type="submit" { "Open the record" }
            }
        },
    )
}

pub fn overview(
    user: &CurrentUser,
    csrf: &str,
    banner: RecordBanner,
    patient: PatientId,
    record: &RecordOverview,
) -> Markup {
    let base = format!("/clinician/patients/{}", patient.0);
    let RecordOverview {
        latest,
        active,
        plans,
        diagnoses,
        allergies,
        vaccinations,
        contacts,
    } = record;
    record_page(
        "Patient overview",
        user,
        csrf,
        banner,
        patient,
        html! {
            (overview_section("Allergies", allergies, &base))
            (overview_section("Current diagnoses", diagnoses, &base))
            (overview_section("Upcoming and recent contacts", contacts, &base))
            section {
                h2 { "Latest lab results" }
                @if latest.is_empty() { p.hint { "No results." } } @else { (lab_table(latest, &format!("{base}/labs"), true)) }
            }
            section { h2 { "Active prescriptions" } (prescription_table(active, "Active prescriptions")) }
            section {
                h2 { "Treatment plans" }
                @if plans.is_empty() { p.hint { "No plans." } }
                @for plan in plans { (plan_card(plan, html! {})) }
            }
            (overview_section("Vaccinations", vaccinations, &base))
        },
    )
}

/// What the clinician's overview of a record shows.
pub struct RecordOverview {
    pub latest: Vec<LabResult>,
    pub active: Vec<Prescription>,
    pub plans: Vec<TreatmentPlan>,
    pub diagnoses: Vec<Diagnosis>,
    pub allergies: Vec<Allergy>,
    pub vaccinations: Vec<Vaccination>,
    pub contacts: Vec<Contact>,
}

/// The page of one kind of record: diagnoses, allergies or vaccinations.
pub fn entries<T: Listed>(
    user: &CurrentUser,
    csrf: &str,
    banner: RecordBanner,
    patient: PatientId,
    items: &[T],
) -> Markup {
    record_page(
        T::TITLE,
        user,
        csrf,
        banner,
        patient,
        table(items, T::TITLE),
    )
}

pub fn labs(
    user: &CurrentUser,
    csrf: &str,
    banner: RecordBanner,
    patient: PatientId,
    results: &[LabResult],
) -> Markup {
    let base = format!("/clinician/patients/{}", patient.0);
    let now = OffsetDateTime::now_utc();
    record_page(
        "Lab results",
        user,
        csrf,
        banner,
        patient,
        html! {
            div.table-wrap tabindex="0" role="region" aria-label="Table, scrolls sideways on small screens" {
                table {
                    caption { "All results, newest first" }
                    thead { tr { th scope="col" { "Test" } th scope="col" { "Value" } th scope="col" { "Reference range" } th scope="col" { "Flag" } th scope="col" { "Taken" } th scope="col" { "Visible to patient" } } }
                    tbody {
                        @for r in results {
                            tr {
                                td { a href={ (base) "/labs/" (r.code) } { (r.display) } }
                                td.num { (r.value) " " (r.unit.as_deref().unwrap_or("")) }
                                td.num { (r.reference_range()) }
                                td { (flag(r.interpretation)) }
                                td { (day(r.effective_at)) }
                                td {
                                    @if r.is_released(now) { "Yes" } @else {
                                        strong { "Held back" }
                                        form.inline method="post" action={ (base) "/results/" (r.id) "/release" } {
                                            (csrf_field(csrf))
                                            button type="submit" { "Release " (r.display) " to the patient" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

pub fn lab_history(
    user: &CurrentUser,
    csrf: &str,
    banner: RecordBanner,
    patient: PatientId,
    history: &[LabResult],
) -> Markup {
    let title = history.first().map_or("Lab result", |r| r.display.as_str());
    record_page(
        title,
        user,
        csrf,
        banner,
        patient,
        html! { (trend_chart(history)) (history_table(history)) },
    )
}

pub fn prescriptions(
    user: &CurrentUser,
    csrf: &str,
    banner: RecordBanner,
    patient: PatientId,
    (active, past, requests): (&[Prescription], &[Prescription], &[RenewalRequest]),
    refused: Option<(&str, &PrescriptionForm)>,
) -> Markup {
    let base = format!("/clinician/patients/{}/prescriptions", patient.0);
    let answer = format!("/clinician/patients/{}/renewals", patient.0);
    let empty = PrescriptionForm::default();
    let form = refused.map_or(&empty, |r| r.1);
    record_page(
        "Prescriptions",
        user,
        csrf,
        banner,
        patient,
        html! {
            @if !requests.is_empty() {
                section {
                    h2 { "Renewal requests" }
                    @for r in requests {
                        article.card {
                            h3 { (r.medication_name) }
                            p.meta { "Asked " (day(r.requested_at.0)) " by " (r.requested_by_name) }
                            @if !r.message.is_empty() { blockquote { (r.message) } }
                            form method="post" action={ (answer) "/" (r.id.0) "/renew" } {
                                (csrf_field(csrf))
                                label for={ "until-" (r.id.0) } { "Valid until (optional)" }
                                input id={ "until-" (r.id.0) } name="valid_until" type="date";
                                button type="submit" { "Renew " (r.medication_name) }
                            }
                            form method="post" action={ (answer) "/" (r.id.0) "/decline" } {
                                (csrf_field(csrf))
                                label for={ "decline-" (r.id.0) } { "Reason for declining" }
                                input id={ "decline-" (r.id.0) } name="reason" required minlength="3" maxlength="1000";
                                button type="submit" { "Decline" }
                            }
                        }
                    }
                }
            }
            section {
                h2 { "Active" }
                (prescription_table(active, "Active prescriptions"))
                @for p in active {
                    details {
                        summary { "Stop " (p.medication_name) }
                        form method="post" action={ (base) "/" (p.id) "/stop" } {
                            (csrf_field(csrf))
                            input type="hidden" name="version" value=(p.version);
                            label for={ "reason-" (p.id) } { "Reason for stopping " (p.medication_name) }
                            input id={ "reason-" (p.id) } name="reason" required minlength="3" maxlength="500";
                            button type="submit" { "Stop prescription" }
                        }
                    }
                }
            }
            section { h2 { "Past" } (prescription_table(past, "Past prescriptions")) }
            section {
                h2 { "New prescription" }
                @if let Some((problem, _)) = refused { p.notice.error role="alert" { (problem) } }
                form method="post" action=(base) {
                    (csrf_field(csrf))
                    label for="medication_code" { "ATC code" }
                    input #medication_code name="medication_code" required pattern="[A-Za-z][0-9]{2}[A-Za-z]{2}[0-9]{2}" value=(form.medication_code);
                    label for="medication_name" { "Medicine (name and strength)" }
                    input #medication_name name="medication_name" required maxlength="200" value=(form.medication_name);
                    label for="dosage_text" { "Dosage" }
                    input #dosage_text name="dosage_text" required maxlength="500" value=(form.dosage_text);
                    label for="valid_from" { "From (empty: today)" }
                    input #valid_from type="date" name="valid_from" value=(form.valid_from);
                    label for="valid_until" { "Until (empty: until stopped)" }
                    input #valid_until type="date" name="valid_until" value=(form.valid_until);
                    button type="submit" { "Prescribe" }
                }
            }
        },
    )
}

pub fn plans(
    user: &CurrentUser,
    csrf: &str,
    banner: RecordBanner,
    patient: PatientId,
    plans: &[TreatmentPlan],
) -> Markup {
    let base = format!("/clinician/patients/{}/plans", patient.0);
    record_page(
        "Treatment plans",
        user,
        csrf,
        banner,
        patient,
        html! {
            p { a.button href={ (base) "/new" } { "New treatment plan" } }
            @if plans.is_empty() { p.hint { "No plans." } }
            @for plan in plans {
                (plan_card(plan, html! { p { a href={ (base) "/" (plan.id) } { "Edit " (plan.title) } } }))
            }
        },
    )
}

const PLAN_STATUSES: [&str; 5] = ["draft", "active", "on-hold", "completed", "revoked"];

fn plan_fields(csrf: &str, action: &str, form: &PlanForm) -> Markup {
    html! {
        form method="post" action=(action) {
            (csrf_field(csrf))
            input type="hidden" name="version" value=(form.version);
            label for="title" { "Title" }
            input #title name="title" required maxlength="200" value=(form.title);
            label for="description" { "Description" }
            textarea #description name="description" maxlength="4000" rows="3" { (form.description) }
            label for="status" { "Status" }
            select #status name="status" {
                @for s in PLAN_STATUSES { option value=(s) selected[form.status == s] { (s) } }
            }
            label for="period_start" { "From (empty: today)" }
            input #period_start type="date" name="period_start" value=(form.period_start);
            label for="period_end" { "Until (optional)" }
            input #period_end type="date" name="period_end" value=(form.period_end);
            label for="goals" { "Goals, one per line: description | target | status (proposed, active, achieved, cancelled)" }
            textarea #goals name="goals" rows="4" { (form.goals) }
            label for="activities" { "Activities, one per line: description | status (not-started, scheduled, in-progress, completed, cancelled)" }
            textarea #activities name="activities" rows="4" { (form.activities) }
            button type="submit" { "Save plan" }
        }
    }
}

pub fn plan_form(
    user: &CurrentUser,
    csrf: &str,
    banner: RecordBanner,
    patient: PatientId,
    plan: Option<Uuid>,
    form: &PlanForm,
    problem: Option<&str>,
) -> Markup {
    let base = format!("/clinician/patients/{}/plans", patient.0);
    let action = match plan {
        Some(id) => format!("{base}/{id}"),
        None => base,
    };
    record_page(
        if plan.is_some() {
            "Edit treatment plan"
        } else {
            "New treatment plan"
        },
        user,
        csrf,
        banner,
        patient,
        html! {
            @if let Some(problem) = problem { p.notice.error role="alert" { (problem) } }
            (plan_fields(csrf, &action, form))
        },
    )
}

pub fn plan_conflict(
    user: &CurrentUser,
    csrf: &str,
    banner: RecordBanner,
    patient: PatientId,
    current: &TreatmentPlan,
    yours: &PlanForm,
) -> Markup {
    let action = format!("/clinician/patients/{}/plans/{}", patient.0, current.id);
    record_page(
        "Changed by someone else",
        user,
        csrf,
        banner,
        patient,
        html! {
            p.notice.error role="alert" {
                (current.author) " saved this plan (now version " (current.version) ", " (super::clock::day(current.updated_at)) ") after you opened it, so your changes were not saved. "
                "Compare the two below. Your text is kept in the form: save it to replace their version, or edit it first."
            }
            section { h2 { "The plan as it is now" } (plan_card(current, html! {})) }
            section { h2 { "Your changes" } (plan_fields(csrf, &action, yours)) }
        },
    )
}

/// The clinic's queue of open renewal requests: whose, and since when.
pub fn renewal_queue(
    user: &CurrentUser,
    csrf: &str,
    queue: &[(Patient, OffsetDateTime)],
) -> Markup {
    let frame = Frame {
        user,
        csrf,
        record: None,
    };
    page(
        "Renewal requests",
        Some(&frame),
        html! {
            @if queue.is_empty() { p.hint { "No open requests from the clinic's patients." } } @else {
                ul.hits {
                    @for (patient, asked) in queue {
                        li.card {
                            a href={ "/clinician/patients/" (patient.id.0) "/prescriptions" } { (patient.full_name()) }
                            " · born " (date_text(patient.birth_date)) " · asked " (day(*asked))
                        }
                    }
                }
            }
        },
    )
}
