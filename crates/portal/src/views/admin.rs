//! The administrator's pages: users, clinics, GP listings, care relationships.

use std::collections::HashMap;

use access_control::accounts::User;
use access_control::care::CareRelationship;
use maud::{html, Markup};
use records_domain::model::Clinic;
use uuid::Uuid;

use super::components::day;
use super::layout::{csrf_field, page, Frame};
use crate::auth::CurrentUser;

fn admin_page(title: &str, user: &CurrentUser, csrf: &str, body: Markup) -> Markup {
    let frame = Frame {
        user,
        csrf,
        record: None,
    };
    page(title, Some(&frame), body)
}

fn clinic_options(clinics: &[Clinic], empty_label: &str) -> Markup {
    html! {
        option value="" { (empty_label) }
        @for c in clinics { option value=(c.id) { (c.name) } }
    }
}

/// `issued`: a user name and the one-time password just set for it, shown once.
pub fn users(
    admin: &CurrentUser,
    csrf: &str,
    users: &[User],
    clinics: &[Clinic],
    issued: Option<(&str, &str)>,
) -> Markup {
    let clinic_names: HashMap<Uuid, &str> =
        clinics.iter().map(|c| (c.id, c.name.as_str())).collect();
    admin_page(
        "Users",
        admin,
        csrf,
        html! {
            @if let Some((username, password)) = issued {
                p.notice role="status" {
                    "One-time password for " strong { (username) } ": " code.secret { (password) }
                    ". Hand it over in person; it is shown only now and must be changed at the first sign-in. Staff set up their authenticator app at that sign-in."
                }
            }
            section {
                h2 { "New user" }
                form method="post" action="/admin/users" {
                    (csrf_field(csrf))
                    label for="username" { "User name" }
                    input #username name="username" required maxlength="64" autocomplete="off";
                    label for="display_name" { "Full name" }
                    input #display_name name="display_name" required maxlength="200";
                    label for="role" { "Role" }
                    select #role name="role" {
                        option value="clinician" { "Clinician" }
                        option value="patient" { "Citizen" }
                        option value="auditor" { "Auditor" }
                        option value="administrator" { "Administrator" }
                    }
                    label for="clinic" { "Clinic (clinicians)" }
                    select #clinic name="clinic" { (clinic_options(clinics, "—")) }
                    label for="cpr" { "CPR number (citizens)" }
                    input #cpr name="cpr" maxlength="11" autocomplete="off";
                    button type="submit" { "Create user" }
                }
            }
            section {
                h2 { "All users" }
                div.table-wrap tabindex="0" role="region" aria-label="Table, scrolls sideways on small screens" {
                    table {
                        caption.visually-hidden { "Users" }
                        thead { tr { th scope="col" { "User name" } th scope="col" { "Name" } th scope="col" { "Role" } th scope="col" { "Clinic" } th scope="col" { "Second factor" } th scope="col" { "Status" } th scope="col" { "Actions" } } }
                        tbody {
                            @for u in users {
                                tr {
                                    td { (u.username) }
                                    td { (u.display_name) }
                                    td { (u.role.as_str()) }
                                    td { (u.clinic_id.and_then(|c| clinic_names.get(&c).copied()).unwrap_or("")) }
                                    td { @if u.totp_secret.is_some() { "yes" } @else { "no" } }
                                    td { @if u.disabled { strong { "disabled" } } @else { "active" } @if u.must_change_password { br; small { "must change password" } } }
                                    td {
                                        @if u.id != admin.user.id {
                                            form.inline method="post" action={ "/admin/users/" (u.id) (if u.disabled { "/enable" } else { "/disable" }) } {
                                                (csrf_field(csrf))
                                                button type="submit" { (if u.disabled { "Enable " } else { "Disable " }) (u.username) }
                                            }
                                            form.inline method="post" action={ "/admin/users/" (u.id) "/reset-password" } {
                                                (csrf_field(csrf))
                                                button type="submit" { "Reset password of " (u.username) }
                                            }
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

pub fn clinics(admin: &CurrentUser, csrf: &str, clinics: &[(Clinic, i64)]) -> Markup {
    admin_page(
        "Clinics",
        admin,
        csrf,
        html! {
            div.table-wrap tabindex="0" role="region" aria-label="Table, scrolls sideways on small screens" {
                table {
                    caption.visually-hidden { "Clinics" }
                    thead { tr { th scope="col" { "Name" } th scope="col" { "Kind" } th scope="col" { "Address" } th scope="col" { "Phone" } th scope="col" { "Listed patients" } } }
                    tbody {
                        @for (c, listed) in clinics {
                            tr { td { (c.name) } td { (c.kind.as_str()) } td { (c.address) } td { (c.phone) } td.num { (listed) } }
                        }
                    }
                }
            }
            section {
                h2 { "New clinic" }
                form method="post" action="/admin/clinics" {
                    (csrf_field(csrf))
                    label for="name" { "Name" }
                    input #name name="name" required maxlength="200";
                    label for="kind" { "Kind" }
                    select #kind name="kind" {
                        option value="general_practice" { "General practice" }
                        option value="hospital" { "Hospital" }
                        option value="laboratory" { "Laboratory" }
                    }
                    label for="address" { "Address" }
                    input #address name="address" maxlength="300";
                    label for="phone" { "Phone" }
                    input #phone name="phone" maxlength="40";
                    button type="submit" { "Create clinic" }
                }
            }
        },
    )
}

pub fn listings(admin: &CurrentUser, csrf: &str, clinics: &[Clinic], done: Option<&str>) -> Markup {
    admin_page(
        "GP listings",
        admin,
        csrf,
        html! {
            @if let Some(done) = done { p.notice role="status" { (done) } }
            p { "A patient listed with a practice can be seen by that practice's clinicians." }
            form method="post" action="/admin/listings" {
                (csrf_field(csrf))
                label for="cpr" { "Patient's CPR number" }
                input #cpr name="cpr" required maxlength="11" autocomplete="off";
                label for="clinic" { "Practice" }
                select #clinic name="clinic" { (clinic_options(clinics, "No GP practice")) }
                button type="submit" { "Set listing" }
            }
        },
    )
}

pub fn relationships(
    admin: &CurrentUser,
    csrf: &str,
    relationships: &[CareRelationship],
    clinicians: &[User],
) -> Markup {
    let now = time::OffsetDateTime::now_utc();
    admin_page(
        "Care relationships",
        admin,
        csrf,
        html! {
            section {
                h2 { "New care relationship" }
                form method="post" action="/admin/relationships" {
                    (csrf_field(csrf))
                    label for="clinician" { "Clinician" }
                    select #clinician name="clinician" required {
                        @for c in clinicians { option value=(c.id) { (c.display_name) } }
                    }
                    label for="cpr" { "Patient's CPR number" }
                    input #cpr name="cpr" required maxlength="11" autocomplete="off";
                    label for="from" { "From (empty: today)" }
                    input #from type="date" name="from";
                    label for="until" { "Until (optional)" }
                    input #until type="date" name="until";
                    label for="reason" { "What for" }
                    input #reason name="reason" required maxlength="300";
                    button type="submit" { "Add relationship" }
                }
            }
            section {
                h2 { "Relationships" }
                div.table-wrap tabindex="0" role="region" aria-label="Table, scrolls sideways on small screens" {
                    table {
                        caption.visually-hidden { "Care relationships" }
                        thead { tr { th scope="col" { "Clinician" } th scope="col" { "Patient id" } th scope="col" { "From" } th scope="col" { "Until" } th scope="col" { "What for" } th scope="col" { "" } } }
                        tbody {
                            @for r in relationships {
                                tr {
                                    td { (r.clinician_name) }
                                    td { code { (r.patient_id.0) } }
                                    td { (day(r.valid_from)) }
                                    td { (r.valid_until.map(day).unwrap_or_default()) }
                                    td { (r.reason) }
                                    td {
                                        @if r.valid_until.is_none_or(|u| u > now) {
                                            form.inline method="post" action={ "/admin/relationships/" (r.id) "/end" } {
                                                (csrf_field(csrf))
                                                button type="submit" { "End relationship of " (r.clinician_name) }
                                            }
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
