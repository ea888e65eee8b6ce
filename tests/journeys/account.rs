//! The account a user meets: changing the password under the rules, a patient turning on the
//! second factor (QR code, recovery codes shown once, each usable once), the idle timeout; each
//! TOTP code signs in once, and a new password or second factor ends every other session.

use crate::support;

use records_domain::Engine;
use support::TestApp;

both_engines!(
    password_change_follows_the_rules,
    |app: TestApp| async move {
        let mut karen = app.signed_in("karen").await;
        karen.get("/account/password").await.assert_ok();
        let current = support::demo("karen").password;
        for (current, new, confirm, message) in [
            (
                "wrong-current-password",
                "a-fine-new-passphrase",
                "a-fine-new-passphrase",
                "current password is not right",
            ),
            (current, "short-one", "short-one", "at least 12 characters"),
            (current, "123456789012", "123456789012", "too easy to guess"),
            (
                current,
                "karen-is-my-name-2026",
                "karen-is-my-name-2026",
                "too easy to guess",
            ),
            (
                current,
                "a-fine-new-passphrase",
                "a-different-passphrase",
                "not the same",
            ),
        ] {
            let page = karen
                .post(
                    "/account/password",
                    &[("current", current), ("new", new), ("confirm", confirm)],
                )
                .await;
            assert_eq!(page.status, 400, "{new}");
            assert!(page.contains(message), "{new}: {}", page.body);
        }
        let new = "a-fine-new-passphrase";
        karen
            .post(
                "/account/password",
                &[("current", current), ("new", new), ("confirm", new)],
            )
            .await
            .assert_ok();
        assert_eq!(
            app.browser().login("karen").await.status,
            401,
            "the old password is gone"
        );
        let mut again = app.browser();
        assert!(again.login_with("karen", new).await.url.ends_with("/me"));
    }
);

both_engines!(
    patient_turns_on_the_second_factor,
    |app: TestApp| async move {
        let mut anne = app.signed_in("anne").await;
        anne.get("/account/security").await.assert_ok();
        let enrol = anne
            .post(
                "/account/totp/start",
                &[("password", support::demo("anne").password)],
            )
            .await;
        enrol.assert_ok();
        assert!(enrol.contains("<svg"), "QR code drawn server-side");
        let start = enrol
            .body
            .find("Or type this key into the app: <code>")
            .expect("key")
            + 37;
        let secret = enrol.body[start..start + enrol.body[start..].find('<').unwrap()].to_string();
        let wrong = anne
            .post("/account/totp/confirm", &[("code", "000000")])
            .await;
        assert_eq!(wrong.status, 400);
        let code = portal::auth::totp::current_code(&secret, "anne").unwrap();
        let codes_page = anne.post("/account/totp/confirm", &[("code", &code)]).await;
        codes_page.assert_ok();
        let codes: Vec<String> = codes_page
            .body
            .split("<li><code>")
            .skip(1)
            .map(|c| c[..c.find('<').unwrap()].to_string())
            .collect();
        assert_eq!(codes.len(), 8, "recovery codes shown once");
        anne.logout().await;

        // From now on a password alone is not enough; a recovery code works once.
        let mut b = app.browser();
        let asked = b.login_with("anne", support::demo("anne").password).await;
        assert!(asked.url.ends_with("/login/second-factor"));
        assert!(b.get("/me").await.is_login_page());
        b.get("/login/second-factor").await;
        assert!(b
            .post("/login/second-factor", &[("code", &codes[0])])
            .await
            .url
            .ends_with("/me"));
        let mut c = app.browser();
        c.login_with("anne", support::demo("anne").password).await;
        let reused = c.post("/login/second-factor", &[("code", &codes[0])]).await;
        assert!(
            !reused.url.ends_with("/me"),
            "a recovery code works only once"
        );
        assert!(app.browser().get("/account/security").await.is_login_page());
    }
);

/// The secret shown on the set-up page.
fn enrolment_secret(page: &support::Page) -> String {
    let start = page
        .body
        .find("Or type this key into the app: <code>")
        .expect("key")
        + 37;
    page.body[start..start + page.body[start..].find('<').unwrap()].to_string()
}

fn current_step() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 30
}

both_engines!(
    a_totp_code_signs_in_once,
    with | c | c.trusted_proxies = 1,
    |app: TestApp| async move {
        let hansen = support::demo("dr.hansen");
        let secret = hansen.totp.as_deref().unwrap();
        let code = portal::auth::totp::code_of_step(secret, "dr.hansen", current_step()).unwrap();
        // Two sign-ins with the same code, one after the other: the second is refused.
        let mut first = app.browser_forwarded_for("192.0.2.1");
        first.login_with("dr.hansen", hansen.password).await;
        let signed_in = first.post("/login/second-factor", &[("code", &code)]).await;
        assert!(signed_in.url.ends_with("/clinician"), "{}", signed_in.url);
        let mut second = app.browser_forwarded_for("192.0.2.2");
        second.login_with("dr.hansen", hansen.password).await;
        let replay = second
            .post("/login/second-factor", &[("code", &code)])
            .await;
        assert_eq!(replay.status, 401, "a used code is refused");
        assert!(second.get("/clinician").await.is_login_page());

        // Several at once with one fresh code: exactly one gets in.
        let larsen = support::demo("dr.larsen");
        let secret = larsen.totp.as_deref().unwrap();
        let code =
            portal::auth::totp::code_of_step(secret, "dr.larsen", current_step() + 1).unwrap();
        let mut racers = Vec::new();
        for i in 0..6 {
            let mut b = app.browser_forwarded_for(&format!("192.0.2.{}", 10 + i));
            b.login_with("dr.larsen", larsen.password).await;
            racers.push(b);
        }
        let fields = [("code", code.as_str())];
        let answers = futures::future::join_all(
            racers
                .iter_mut()
                .map(|b| b.post("/login/second-factor", &fields)),
        )
        .await;
        let in_ = answers
            .iter()
            .filter(|p| p.url.ends_with("/clinician"))
            .count();
        assert_eq!(
            in_,
            1,
            "{:?}",
            answers.iter().map(|p| p.status).collect::<Vec<_>>()
        );

        // The code that confirmed a new second factor cannot sign in again.
        let mut anne = app.signed_in("anne").await;
        let setup = anne
            .post(
                "/account/totp/start",
                &[("password", support::demo("anne").password)],
            )
            .await;
        let secret = enrolment_secret(&setup);
        let code = portal::auth::totp::code_of_step(&secret, "anne", current_step()).unwrap();
        anne.post("/account/totp/confirm", &[("code", &code)])
            .await
            .assert_ok();
        let mut again = app.browser();
        again
            .login_with("anne", support::demo("anne").password)
            .await;
        let replay = again.post("/login/second-factor", &[("code", &code)]).await;
        assert_eq!(replay.status, 401, "the enrolment code is used up");
    }
);

both_engines!(
    changing_the_password_ends_every_other_session,
    |app: TestApp| async move {
        let mut here = app.signed_in("karen").await;
        let mut elsewhere = app.signed_in("karen").await;
        elsewhere.get("/me").await.assert_ok();
        here.get("/account/password").await;
        let new = "a-fine-new-passphrase";
        here.post(
            "/account/password",
            &[
                ("current", support::demo("karen").password),
                ("new", new),
                ("confirm", new),
            ],
        )
        .await
        .assert_ok();
        assert!(elsewhere.get("/me").await.is_login_page(), "signed out");
        here.get("/me").await.assert_ok();
    }
);

both_engines!(
    setting_up_the_second_factor_again_needs_the_password_and_ends_other_sessions,
    |app: TestApp| async move {
        let password = support::demo("anne").password;
        let mut here = app.signed_in("anne").await;
        let mut elsewhere = app.signed_in("anne").await;
        let secret = set_up_second_factor(&mut here, &mut elsewhere, password).await;

        // Again with the second factor on: the same rules.
        let mut third = app.browser();
        third.login_with("anne", password).await;
        let next = portal::auth::totp::code_of_step(&secret, "anne", current_step() + 1).unwrap();
        third
            .post("/login/second-factor", &[("code", &next)])
            .await
            .assert_ok();
        set_up_second_factor(&mut here, &mut third, password).await;
    }
);

/// Set up a second factor in `here`: a wrong password is refused without a new secret, the
/// right one gives a secret whose code confirms it, and `elsewhere` (another session of the
/// same user) is signed out. Returns the new secret.
async fn set_up_second_factor(
    here: &mut support::Browser,
    elsewhere: &mut support::Browser,
    password: &str,
) -> String {
    here.get("/account/security").await;
    let refused = here
        .post("/account/totp/start", &[("password", "not-my-password")])
        .await;
    assert_eq!(refused.status, 400);
    assert!(refused
        .select_text("[role=alert]")
        .iter()
        .any(|m| m.contains("current password is not right")));
    assert!(!refused.contains("Or type this key"), "no new secret");
    let setup = here
        .post("/account/totp/start", &[("password", password)])
        .await;
    let secret = enrolment_secret(&setup);
    let code = portal::auth::totp::code_of_step(&secret, "anne", current_step()).unwrap();
    here.post("/account/totp/confirm", &[("code", &code)])
        .await
        .assert_ok();
    assert!(elsewhere.get("/me").await.is_login_page(), "signed out");
    here.get("/me").await.assert_ok();
    secret
}

both_engines!(an_idle_session_ends, |app: TestApp| async move {
    let mut bo = app.signed_in("bo").await;
    bo.get("/me").await.assert_ok();
    // Fifteen idle minutes, fast-forwarded: the stored session has passed its expiry.
    let expire = match app.engine {
        Engine::Sqlite => "UPDATE tower_sessions SET expiry_date = 0",
        Engine::Postgres => {
            "UPDATE tower_sessions.session SET expiry_date = now() - interval '1 minute'"
        }
    };
    sqlx::query(expire).execute(app.db.pool()).await.unwrap();
    assert!(bo.get("/me").await.is_login_page());
});

// The idle timeout slides with activity, but a page view does not write the session each
// time: within a minute of the last save the stored session is left alone.
both_engines!(
    page_views_do_not_rewrite_the_session,
    |app: TestApp| async move {
        let mut anne = app.signed_in("anne").await;
        let stored = match app.engine {
        Engine::Sqlite => "SELECT CAST(expiry_date AS TEXT) || hex(data) FROM tower_sessions",
        Engine::Postgres => {
            "SELECT CAST(expiry_date AS TEXT) || encode(data, 'hex') FROM tower_sessions.session"
        }
    };
        let before = app.text(stored).await;
        for _ in 0..5 {
            anne.get("/me").await.assert_ok();
            anne.get("/me/labs").await.assert_ok();
        }
        assert_eq!(
            app.text(stored).await,
            before,
            "the session was saved again"
        );
    }
);
