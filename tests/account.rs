//! The account a user meets: changing the password under the rules, a patient turning on the
//! second factor (QR code, recovery codes shown once, each usable once), and the idle timeout.

mod support;

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
        let enrol = anne.post("/account/totp/start", &[]).await;
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
