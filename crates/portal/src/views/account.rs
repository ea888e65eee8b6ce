use maud::{html, Markup, PreEscaped};

use super::layout::{csrf_field, page, Frame};
use crate::auth::CurrentUser;

fn notice(problem: Option<&str>) -> Markup {
    html! { @if let Some(p) = problem { p.notice.error role="alert" { (p) } } }
}

pub fn login(csrf: &str, problem: Option<&str>) -> Markup {
    page(
        "Sign in",
        None,
        html! {
            (notice(problem))
            form.card method="post" action="/login" {
                (csrf_field(csrf))
                label for="username" { "User name" }
                input #username name="username" autocomplete="username" required autofocus;
                label for="password" { "Password" }
                input #password name="password" type="password" autocomplete="current-password" required;
                button type="submit" { "Sign in" }
            }
            p.hint { "Staff (clinicians, auditors, administrators) confirm with a code from their authenticator app next." }
        },
    )
}

pub fn second_factor(csrf: &str, problem: Option<&str>) -> Markup {
    page(
        "Confirm it is you",
        None,
        html! {
            (notice(problem))
            form.card method="post" action="/login/second-factor" {
                (csrf_field(csrf))
                label for="code" { "6-digit code from your authenticator app, or a recovery code" }
                input #code name="code" autocomplete="one-time-code" inputmode="numeric" required autofocus;
                button type="submit" { "Continue" }
            }
        },
    )
}

fn enrol_form(
    csrf: &str,
    qr_svg: &str,
    secret: &str,
    problem: Option<&str>,
    action: &str,
) -> Markup {
    html! {
        (notice(problem))
        p { "Scan the code with an authenticator app, then enter the 6-digit code it shows." }
        // The SVG is drawn by the qrcode crate from our own secret: squares only, no user text.
        figure.qr aria-label="QR code for the authenticator app" { (PreEscaped(qr_svg)) }
        p { "Or type this key into the app: " code { (secret) } }
        form.card method="post" action=(action) {
            (csrf_field(csrf))
            label for="code" { "6-digit code" }
            input #code name="code" autocomplete="one-time-code" inputmode="numeric" required;
            button type="submit" { "Confirm" }
        }
    }
}

pub fn enrol_second_factor(
    csrf: &str,
    qr_svg: &str,
    secret: &str,
    problem: Option<&str>,
    action: &str,
) -> Markup {
    page(
        "Set up your second factor",
        None,
        enrol_form(csrf, qr_svg, secret, problem, action),
    )
}

pub fn enrol_page(
    user: &CurrentUser,
    csrf: &str,
    qr_svg: &str,
    secret: &str,
    problem: Option<&str>,
) -> Markup {
    let frame = Frame {
        user,
        csrf,
        record: None,
    };
    page(
        "Set up a second factor",
        Some(&frame),
        enrol_form(csrf, qr_svg, secret, problem, "/account/totp/confirm"),
    )
}

pub fn recovery_codes(user: &CurrentUser, csrf: &str, codes: &[String]) -> Markup {
    let frame = Frame {
        user,
        csrf,
        record: None,
    };
    page(
        "Second factor is on",
        Some(&frame),
        html! {
            p.notice.ok role="status" { "From now on you confirm each sign-in with a code from your app." }
            p { "These recovery codes are shown only this once. Each works once if you lose your phone. Keep them somewhere safe." }
            ul.codes { @for c in codes { li { code { (c) } } } }
        },
    )
}

pub fn security(user: &CurrentUser, csrf: &str, problem: Option<&str>) -> Markup {
    let frame = Frame {
        user,
        csrf,
        record: None,
    };
    page(
        "Security",
        Some(&frame),
        html! {
            section {
                h2 { "Second factor" }
                (notice(problem))
                @if user.user.totp_secret.is_some() {
                    p { "Sign-in is confirmed with a code from your authenticator app. New phone? Set up the app again: the old codes and recovery codes stop working, and you are signed out everywhere else." }
                } @else {
                    p { "Protect your account with a code from an authenticator app at every sign-in." }
                }
                form.card method="post" action="/account/totp/start" {
                    (csrf_field(csrf))
                    label for="password" { "Current password" }
                    input #password name="password" type="password" autocomplete="current-password" required;
                    button type="submit" {
                        @if user.user.totp_secret.is_some() { "Set up the app again" } @else { "Set up a second factor" }
                    }
                }
            }
            section {
                h2 { "Password" }
                p { a href="/account/password" { "Change your password" } }
            }
        },
    )
}

pub fn change_password(user: &CurrentUser, csrf: &str, problem: Option<&str>) -> Markup {
    let frame = Frame {
        user,
        csrf,
        record: None,
    };
    page(
        "Change password",
        Some(&frame),
        html! {
            @if user.user.must_change_password { p.notice role="status" { "Your password was reset. Choose a new one to continue." } }
            (notice(problem))
            form.card method="post" action="/account/password" {
                (csrf_field(csrf))
                label for="current" { "Current password" }
                input #current name="current" type="password" autocomplete="current-password" required;
                label for="new" { "New password (at least 12 characters; a few unrelated words work well)" }
                input #new name="new" type="password" autocomplete="new-password" minlength="12" required;
                label for="confirm" { "New password again" }
                input #confirm name="confirm" type="password" autocomplete="new-password" minlength="12" required;
                button type="submit" { "Change password" }
            }
        },
    )
}

pub fn password_changed(user: &CurrentUser, csrf: &str) -> Markup {
    let frame = Frame {
        user,
        csrf,
        record: None,
    };
    page(
        "Password changed",
        Some(&frame),
        html! {
            p.notice.ok role="status" { "Your password has been changed." }
            p { a href=(crate::auth::home_for(user.user.role)) { "Continue" } }
        },
    )
}
