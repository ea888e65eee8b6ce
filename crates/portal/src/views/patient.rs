use std::collections::HashMap;

use access_control::accounts::User;
use access_control::audit::query::Review;
use access_control::audit::AuditEvent;
use access_control::consent::{Block, BlockTarget, Proxy};
use access_control::policy::ProxyKind;
use access_control::{Basis, Denial};
use maud::{html, Markup};
use records_domain::model::{
    Allergy, Clinic, Contact, Diagnosis, LabResult, Prescription, TreatmentPlan, Vaccination,
};
use records_domain::store::renewals::{self, RenewalRequest};
use records_domain::store::Category;
use time::OffsetDateTime;
use uuid::Uuid;

use super::clock;
use super::components::{
    day, flag, history_table, lab_table, plan_card, prescription_table, trend_chart,
};
use super::entries::{overview_section, table, Listed};
use super::layout::{csrf_field, page, Frame, RecordBanner};
use crate::auth::CurrentUser;

/// What the overview shows; `None` for the parts the viewer's basis does not cover.
#[derive(Default)]
pub struct Summary {
    pub banner: RecordBanner,
    pub labs: Option<Vec<LabResult>>,
    pub results_pending: bool,
    pub prescriptions: Option<Vec<Prescription>>,
    pub plans: Option<Vec<TreatmentPlan>>,
    pub diagnoses: Option<Vec<Diagnosis>>,
    pub allergies: Option<Vec<Allergy>>,
    pub vaccinations: Option<Vec<Vaccination>>,
    pub contacts: Option<Vec<Contact>>,
    pub new_accesses: Option<i64>,
    /// Sign-ins to the citizen's own account with an administrator's one-time password that
    /// they have not acknowledged, and whether this session may acknowledge them.
    pub issued_sign_ins: Vec<AuditEvent>,
    pub may_acknowledge: bool,
}

pub fn pending_note() -> Markup {
    html! { p.notice role="status" { "Some results may be pending: your doctor may want to talk with you before they are shown here." } }
}

pub fn overview(user: &CurrentUser, csrf: &str, s: Summary) -> Markup {
    let frame = Frame {
        user,
        csrf,
        record: Some(s.banner),
    };
    page(
        "Overview",
        Some(&frame),
        html! {
            @if !s.issued_sign_ins.is_empty() {
                section.notice.error role="alert" {
                    h2 { "Signed in with a password from an administrator" }
                    p { "Your account was signed in to with a one-time password that an administrator issued. If you did not do this yourself, report it in " a href="/me/access-log" { "who looked at my record" } ", where each of these sign-ins is listed." }
                    ul { @for e in &s.issued_sign_ins { li { time datetime=(e.occurred_at) { (clock::minute_of(&e.occurred_at)) } " (administrator: " (e.actor_name) ")" } } }
                    @if s.may_acknowledge {
                        form method="post" action="/me/sign-in-notice" {
                            (csrf_field(csrf))
                            button type="submit" { "I have seen this" }
                        }
                    } @else {
                        p.hint { "This notice stays until you sign in with a password you chose yourself and confirm you have seen it." }
                    }
                }
            }
            @if let Some(n) = s.new_accesses {
                @if n > 0 {
                    p.notice role="status" { a href="/me/access-log" { (n) " new " (if n == 1 { "access" } else { "accesses" }) " to this record since the last visit." } }
                }
            }
            @if let Some(allergies) = &s.allergies { (overview_section("Allergies", allergies, "/me")) }
            @if let Some(diagnoses) = &s.diagnoses { (overview_section("Current diagnoses", diagnoses, "/me")) }
            @if let Some(contacts) = &s.contacts { (overview_section("Upcoming and recent contacts", contacts, "/me")) }
            @if let Some(labs) = &s.labs {
                section {
                    h2 { "Latest lab results" }
                    @if s.results_pending { (pending_note()) }
                    @if labs.is_empty() { p.hint { "No results yet." } } @else { (lab_table(labs, "/me/labs", false)) }
                    p { a href="/me/labs" { "All lab results" } }
                }
            }
            @if let Some(rx) = &s.prescriptions {
                section {
                    h2 { "Active prescriptions" }
                    (prescription_table(rx, "Active prescriptions"))
                    p { a href="/me/prescriptions" { "All prescriptions" } }
                }
            }
            @if let Some(plans) = &s.plans {
                section {
                    h2 { "Current treatment plans" }
                    @if plans.is_empty() { p.hint { "No current plans." } }
                    @for plan in plans { (plan_card(plan, html! {})) }
                }
            }
            @if let Some(vaccinations) = &s.vaccinations { (overview_section("Vaccinations", vaccinations, "/me")) }
        },
    )
}

/// The page of one kind of record: diagnoses, allergies or vaccinations.
pub fn entries<T: Listed>(
    user: &CurrentUser,
    csrf: &str,
    banner: RecordBanner,
    items: &[T],
) -> Markup {
    record_page(T::TITLE, user, csrf, banner, table(items, T::TITLE))
}

fn record_page(
    title: &str,
    user: &CurrentUser,
    csrf: &str,
    banner: RecordBanner,
    body: Markup,
) -> Markup {
    let frame = Frame {
        user,
        csrf,
        record: Some(banner),
    };
    page(title, Some(&frame), body)
}

/// All results grouped by test, newest test first; each group links to the test's history.
pub fn labs(
    user: &CurrentUser,
    csrf: &str,
    banner: RecordBanner,
    results: &[LabResult],
    pending: bool,
) -> Markup {
    let mut groups: Vec<(&str, Vec<LabResult>)> = Vec::new();
    for r in results {
        match groups.iter_mut().find(|(code, _)| *code == r.code) {
            Some((_, group)) => group.push(r.clone()),
            None => groups.push((&r.code, vec![r.clone()])),
        }
    }
    record_page(
        "Lab results",
        user,
        csrf,
        banner,
        html! {
            @if pending { (pending_note()) }
            @if groups.is_empty() { p.hint { "No results yet." } }
            @for (code, group) in &groups {
                section.test-group {
                    h2 { (group[0].display) }
                    (lab_group_table(group))
                    p { a href={ "/me/labs/" (code) } { "History and trend of " (group[0].display) } }
                }
            }
        },
    )
}

fn lab_group_table(results: &[LabResult]) -> Markup {
    html! {
        div.table-wrap tabindex="0" role="region" aria-label="Table, scrolls sideways on small screens" {
            table {
                caption.visually-hidden { (results[0].display) " results, newest first" }
                thead { tr { th scope="col" { "Taken" } th scope="col" { "Value" } th scope="col" { "Reference range" } th scope="col" { "Flag" } } }
                tbody {
                    @for r in results {
                        tr {
                            td { (day(r.effective_at)) }
                            td.num { (r.value) " " (r.unit.as_deref().unwrap_or("")) }
                            td.num { (r.reference_range()) }
                            td { (flag(r.interpretation)) }
                        }
                    }
                }
            }
        }
    }
}

pub fn lab_history(
    user: &CurrentUser,
    csrf: &str,
    banner: RecordBanner,
    history: &[LabResult],
) -> Markup {
    let title = history.first().map_or("Lab result", |r| r.display.as_str());
    record_page(
        title,
        user,
        csrf,
        banner,
        html! {
            (trend_chart(history))
            (history_table(history))
            p { a href="/me/labs" { "All lab results" } }
        },
    )
}

pub fn prescriptions(
    user: &CurrentUser,
    csrf: &str,
    banner: RecordBanner,
    active: &[Prescription],
    past: &[Prescription],
    renewal: &Renewals,
) -> Markup {
    let today = OffsetDateTime::now_utc().date();
    let open: Vec<Uuid> = renewal
        .requests
        .iter()
        .filter(|r| r.is_open())
        .map(|r| r.prescription_id.0)
        .collect();
    let askable: Vec<&Prescription> = active
        .iter()
        .chain(past)
        .filter(|p| renewals::renewable(p.status, p.valid_until, today) && !open.contains(&p.id))
        .collect();
    record_page(
        "Prescriptions",
        user,
        csrf,
        banner,
        html! {
            section { h2 { "Active" } (prescription_table(active, "Active prescriptions")) }
            section { h2 { "Past" } (prescription_table(past, "Past prescriptions")) }
            @if renewal.may_ask && !askable.is_empty() {
                section {
                    h2 { "Ask for renewal" }
                    p.hint { "Your GP answers here. Current prescriptions and ones that ended in the last 90 days can be renewed." }
                    @for p in askable {
                        details {
                            summary { "Ask for renewal of " (p.medication_name) }
                            form method="post" action={ "/me/prescriptions/" (p.id) "/renewal" } {
                                (csrf_field(csrf))
                                label for={ "message-" (p.id) } { "Message to your GP (optional)" }
                                textarea id={ "message-" (p.id) } name="message" maxlength="1000" rows="3" {}
                                button type="submit" { "Ask for renewal of " (p.medication_name) }
                            }
                        }
                    }
                }
            }
            @if !renewal.requests.is_empty() {
                section {
                    h2 { "Renewal requests" }
                    div.table-wrap tabindex="0" role="region" aria-label="Table, scrolls sideways on small screens" {
                        table {
                            caption { "Renewal requests, newest first" }
                            thead { tr { th scope="col" { "Medicine" } th scope="col" { "Asked" } th scope="col" { "By" } th scope="col" { "Status" } th scope="col" { "Answer" } } }
                            tbody {
                                @for r in &renewal.requests {
                                    tr {
                                        td { (r.medication_name) }
                                        td { (day(r.requested_at.0)) }
                                        td { (r.requested_by_name) }
                                        td { @match r.status.as_str() { "open" => "Waiting for your GP", "renewed" => "Renewed", _ => "Declined" } }
                                        td {
                                            @if let Some(by) = &r.answered_by { (by) }
                                            @if let Some(reason) = &r.answer { ": " (reason) }
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

/// The renewal requests of the record on screen, and whether this viewer may ask (the patient
/// and an attorney may, a guardian may not).
pub struct Renewals {
    pub requests: Vec<RenewalRequest>,
    pub may_ask: bool,
}

pub fn plans(
    user: &CurrentUser,
    csrf: &str,
    banner: RecordBanner,
    plans: &[TreatmentPlan],
) -> Markup {
    record_page(
        "Treatment plans",
        user,
        csrf,
        banner,
        html! {
            @if plans.is_empty() { p.hint { "No treatment plans." } }
            @for plan in plans { (plan_card(plan, html! {})) }
        },
    )
}

fn basis_text(event: &AuditEvent) -> String {
    match Basis::parse(&event.basis) {
        Some(b) => b.describe().to_string(),
        None if event.outcome == "denied" => "refused".to_string(),
        None => event.basis.clone(),
    }
}

/// What someone did with the record, in the patient's words ("read your lab results"), from
/// the action the audit log keeps ("read lab_results").
fn action_text(event: &AuditEvent) -> String {
    let refused = refused(event);
    let part = |code: &str| {
        Category::parse(code).map_or_else(|| code.replace('_', " "), |c| category_words(c).into())
    };
    let action = event.action.as_str();
    if let Some(code) = action.strip_prefix("read ") {
        return match (code, refused) {
            ("summary", false) => "opened the overview of your record".into(),
            ("summary", true) => "tried to open your record".into(),
            (code, false) => format!("read your {}", part(code)),
            (code, true) => format!("tried to read your {}", part(code)),
        };
    }
    if let Some(code) = action.strip_prefix("write ") {
        let verb = if refused {
            "tried to add to"
        } else {
            "added to or changed"
        };
        return format!("{verb} your {}", part(code));
    }
    match action {
        "lookup" if refused => "found your name in a search, but could not open your record".into(),
        "lookup" => "found you in a search of patients".into(),
        "emergency_override" => "opened your record in an emergency, giving a reason".into(),
        "identify" => "looked up whom your CPR number belongs to, to deliver a result".into(),
        "request renewal" => "asked for a prescription to be renewed".into(),
        "manage consent" => "changed who may see your record".into(),
        access_control::accounts::ISSUED_SIGN_IN => {
            "issued the password your account was signed in with".into()
        }
        "reset password" => "reset your password".into(),
        "disable user" => "closed your account".into(),
        "enable user" => "opened your account again".into(),
        other => other.replace('_', " "),
    }
}

fn category_words(category: Category) -> &'static str {
    match category {
        Category::LabResults => "test results",
        Category::Prescriptions => "medicine card",
        Category::TreatmentPlans => "treatment plans",
        Category::Diagnoses => "diagnoses",
        Category::Allergies => "allergies",
        Category::Vaccinations => "vaccinations",
        Category::Contacts => "hospital and GP contacts",
        Category::Procedures => "procedures",
        Category::Reports => "reports and scans",
        Category::AccessLog => "access log",
    }
}

/// A refused access, or a search hit whose record could not have been opened (the search
/// itself succeeded; the event keeps why the record stayed closed).
fn refused(event: &AuditEvent) -> bool {
    event.outcome == "denied" || (event.basis.is_empty() && Denial::parse(&event.reason).is_some())
}

/// Why a refused access was refused, said to the patient (the policy's own words address the
/// one who was refused).
fn refusal_text(reason: &str) -> Option<&'static str> {
    Some(match Denial::parse(reason)? {
        Denial::NotYourRecord => "they hold no power of attorney or guardianship for you",
        Denial::ChildTurned15 => "guardians' access ends when a child turns 15",
        Denial::CategoryNotForGuardians => "guardians do not see this part of a child's record",
        Denial::NoTreatmentRelationship => {
            "you are not listed with their practice and they are not treating you"
        }
        Denial::BlockedByPatient => "you have blocked them",
        Denial::NoClinicalAccessForRole => "their role gives no access to health data",
        Denial::ReadOnlyAccess => "they may read but not change your record",
        Denial::OutsideTokenPatient => "their app's access covers another person only",
        Denial::DemographicsOnlyFromRegister => {
            "only the civil registration system changes your name, sex or birth date"
        }
        Denial::RecordOfAnotherPatient => "the change named another patient",
    })
}

/// How much of the log the viewer may see.
pub struct LogView {
    /// Resource ids (e.g. which test) and stated reasons; not for guardians.
    pub details: bool,
    /// The signed chain, which holds the owner's own actions: the owner's alone.
    pub chain_download: bool,
}

pub fn access_log(
    user: &CurrentUser,
    csrf: &str,
    banner: RecordBanner,
    entries: &[AuditEvent],
    clinic_names: &HashMap<Uuid, String>,
    reviews: &HashMap<Uuid, Review>,
    view_as: LogView,
) -> Markup {
    record_page(
        "Who looked at my record",
        user,
        csrf,
        banner,
        html! {
            p { "Every time someone other than you opens this record, it is written here. If you do not recognise an access, tell us: an auditor will look into it and answer here." }
            @if view_as.chain_download {
                p { a href="/me/access-log/proof.json" download { "Download the signed proof (JSON)" } " that these events are in the portal's public, signed access log; anyone can check it with the published key, without the portal." }
                p { a href="/me/access-log/chain.json" download { "Download the hash chain (JSON)" } " of every event about your record, to check that none was changed." }
            }
            @if entries.is_empty() { p.hint { "Nobody else has opened this record." } }
            ol.access-log {
                @for e in entries {
                    @let emergency = e.basis == Basis::EmergencyOverride.as_str();
                    li.card.emergency[emergency] id={ "e-" (e.id) } {
                        p.meta {
                            time datetime=(e.occurred_at) { (clock::minute_of(&e.occurred_at)) }
                            @if emergency { " · " strong.flag.critical { "Emergency override" } }
                            @if refused(e) { " · " strong { "Refused" } }
                        }
                        p {
                            strong { (e.actor_name) } " (" (e.actor_role)
                            @if let Some(name) = e.actor_clinic_id.and_then(|c| clinic_names.get(&c)) { ", " (name) }
                            ") " (action_text(e))
                            @if let Some(id) = e.resource_id.as_ref().filter(|_| view_as.details) { " " code { (id) } }
                        }
                        @if refused(e) {
                            p { "They were not let in" @if let Some(why) = refusal_text(&e.reason) { ": " (why) } "." }
                        } @else if !e.basis.is_empty() {
                            p { "Why they could: " (basis_text(e)) @if view_as.details && !e.reason.is_empty() { " · Reason given: " q { (e.reason) } } }
                        } @else if view_as.details && !e.reason.is_empty() {
                            p { (e.reason) }
                        }
                        @match reviews.get(&e.id) {
                            Some(r) if r.status == "closed" => {
                                p.notice role="status" { "You reported this. An auditor answered: " (r.resolution_note.as_deref().unwrap_or("")) }
                            }
                            Some(_) => { p.notice role="status" { "You reported this. An auditor will look into it." } }
                            None => {
                                details {
                                    summary { "I don't recognise this" }
                                    form method="post" action={ "/me/access-log/" (e.id) "/report" } {
                                        (csrf_field(csrf))
                                        label for={ "c-" (e.id) } { "What seems wrong? (optional)" }
                                        textarea id={ "c-" (e.id) } name="comment" maxlength="2000" rows="3" {}
                                        button type="submit" { "Send to the auditors" }
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

pub fn blocks(
    user: &CurrentUser,
    csrf: &str,
    banner: RecordBanner,
    current: &[Block],
    clinicians: &[User],
    clinics: &[Clinic],
) -> Markup {
    let now = OffsetDateTime::now_utc();
    record_page(
        "Blocks",
        user,
        csrf,
        banner,
        html! {
            p { "You can stop a named clinician, or everyone at a clinic, from opening your record. In an emergency a clinician can still override a block; that is flagged for review and shown in your access log." }
            section {
                h2 { "Your blocks" }
                @if current.is_empty() { p.hint { "You have no blocks." } }
                ul {
                    @for b in current {
                        li {
                            strong { (b.target_name) }
                            " (" (match b.target { BlockTarget::Clinician(_) => "clinician", BlockTarget::Clinic(_) => "clinic" }) ") · from " (day(b.valid_from))
                            @if let Some(u) = b.valid_until { " until " (day(u)) } @else { " for good" }
                            @if let Some(l) = b.lifted_at { " · lifted " (day(l)) }
                            @else if b.is_active(now) {
                                form.inline method="post" action={ "/me/blocks/" (b.id) "/lift" } {
                                    (csrf_field(csrf))
                                    button type="submit" { "Lift block on " (b.target_name) }
                                }
                            } @else { " · ended" }
                        }
                    }
                }
            }
            section {
                h2 { "Add a block" }
                form method="post" action="/me/blocks" {
                    (csrf_field(csrf))
                    label for="target" { "Who" }
                    select #target name="target" required {
                        optgroup label="Clinicians" {
                            @for c in clinicians { option value={ "clinician:" (c.id) } { (c.display_name) } }
                        }
                        optgroup label="Clinics" {
                            @for c in clinics { option value={ "clinic:" (c.id) } { (c.name) } }
                        }
                    }
                    label for="until" { "Until (leave empty for good)" }
                    input #until type="date" name="until";
                    button type="submit" { "Block" }
                }
            }
        },
    )
}

pub fn proxies(
    user: &CurrentUser,
    csrf: &str,
    banner: RecordBanner,
    held: &[(Proxy, bool)],
    granted: &[Proxy],
) -> Markup {
    let now = OffsetDateTime::now_utc();
    record_page(
        "Proxies",
        user,
        csrf,
        banner,
        html! {
            section {
                h2 { "Records you can open" }
                @if user.signed_in.acting_for.is_some() {
                    form method="post" action="/me/switch" {
                        (csrf_field(csrf))
                        input type="hidden" name="patient" value="";
                        button type="submit" { "Back to your own record" }
                    }
                }
                @if held.is_empty() { p.hint { "You hold no proxies." } }
                ul {
                    @for (p, usable) in held {
                        li {
                            strong { (p.patient_name) } " (born " (p.patient_birth_date) ") · " (proxy_kind(p.kind))
                            @if *usable {
                                form.inline method="post" action="/me/switch" {
                                    (csrf_field(csrf))
                                    input type="hidden" name="patient" value=(p.patient_id.0);
                                    button type="submit" { "Open the record of " (p.patient_name) }
                                }
                            } @else if p.kind == ProxyKind::Guardian && p.is_current(now) {
                                " · ended at the 15th birthday"
                            } @else { " · not current" }
                        }
                    }
                }
            }
            section {
                h2 { "Who can open your record" }
                @if granted.is_empty() { p.hint { "Nobody holds a proxy for your record." } }
                ul {
                    @for p in granted {
                        li {
                            strong { (p.proxy_name) } " · " (proxy_kind(p.kind)) " · from " (day(p.valid_from))
                            @if let Some(u) = p.valid_until { " until " (day(u)) }
                            @if let Some(r) = p.revoked_at { " · revoked " (day(r)) }
                            @else if p.kind == ProxyKind::PowerOfAttorney && p.is_current(now) {
                                form.inline method="post" action={ "/me/proxies/" (p.id) "/revoke" } {
                                    (csrf_field(csrf))
                                    button type="submit" { "Revoke power of attorney of " (p.proxy_name) }
                                }
                            }
                        }
                    }
                }
            }
            section {
                h2 { "Give power of attorney" }
                p { "The person you name can read your whole record (not change it) for the period you choose. You can revoke it at any time." }
                form method="post" action="/me/proxies/grant" {
                    (csrf_field(csrf))
                    label for="username" { "Their user name" }
                    input #username name="username" required maxlength="64" autocomplete="off";
                    label for="from" { "From (empty: today)" }
                    input #from type="date" name="from";
                    label for="until" { "Until (empty: until revoked)" }
                    input #until type="date" name="until";
                    button type="submit" { "Give power of attorney" }
                }
            }
        },
    )
}

fn proxy_kind(kind: ProxyKind) -> &'static str {
    match kind {
        ProxyKind::Guardian => "guardian (until the child turns 15)",
        ProxyKind::PowerOfAttorney => "power of attorney",
    }
}

pub fn timeline(
    user: &CurrentUser,
    csrf: &str,
    banner: RecordBanner,
    entries: &[super::timeline::Entry],
) -> Markup {
    record_page(
        "Timeline",
        user,
        csrf,
        banner,
        html! {
            p.hint { "Everything in this record that has a date, newest first." }
            (super::timeline::list(entries))
        },
    )
}
