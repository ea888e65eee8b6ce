//! Administration over HTTP: users (create, one-time password, disable, reset), clinics, GP
//! listings and care relationships take effect on access at once; administrators see no
//! clinical data and nobody else reaches these pages.

use crate::support;

use support::{Browser, Page, TestApp};

fn one_time_password(page: &Page) -> String {
    let start = page
        .body
        .find("<code class=\"secret\">")
        .expect("password shown")
        + 21;
    let end = page.body[start..].find('<').unwrap() + start;
    page.body[start..end].to_string()
}

/// Sign in with a one-time password: enrol the authenticator, then choose a password.
async fn first_sign_in(app: &TestApp, username: &str, password: &str) -> Browser {
    let mut b = app.browser();
    let enrol = b.login_with(username, password).await;
    assert!(enrol.url.ends_with("/login/second-factor"), "{}", enrol.url);
    let start = enrol
        .body
        .find("Or type this key into the app: <code>")
        .expect("key")
        + 37;
    let end = enrol.body[start..].find('<').unwrap() + start;
    let secret = enrol.body[start..end].to_string();
    let code = portal::auth::totp::current_code(&secret, username).unwrap();
    let change = b.post("/login/second-factor", &[("code", &code)]).await;
    assert!(
        change.url.ends_with("/account/password"),
        "forced to change: {}",
        change.url
    );
    let new = "a-long-new-passphrase-2026";
    b.post(
        "/account/password",
        &[("current", password), ("new", new), ("confirm", new)],
    )
    .await
    .assert_ok();
    b
}

both_engines!(
    create_a_clinician_who_signs_in_and_works,
    |app: TestApp| async move {
        let clinic_a = app
            .text("SELECT clinic_id FROM users WHERE username = 'dr.hansen'")
            .await;
        let mut admin = app.signed_in("admin").await;
        admin.get("/admin/users").await.assert_ok();
        let created = admin
            .post(
                "/admin/users",
                &[
                    ("username", "dr.berg"),
                    ("display_name", "Dr. Ida Berg"),
                    ("role", "clinician"),
                    ("clinic", &clinic_a),
                    ("cpr", ""),
                ],
            )
            .await;
        created.assert_ok();
        let password = one_time_password(&created);
        let mut berg = first_sign_in(&app, "dr.berg", &password).await;
        let anne = app
            .text("SELECT id FROM patients WHERE given_name = 'Anne' AND family_name = 'Jensen'")
            .await;
        berg.get(&format!("/clinician/patients/{anne}"))
            .await
            .assert_ok();

        // Bad input: clear message, nothing written.
        let anne_cpr = app
            .text("SELECT national_id FROM patients WHERE given_name = 'Anne' AND family_name = 'Jensen'")
            .await;
        let users = app.count("SELECT COUNT(*) FROM users").await;
        // A name or citizen that has an account already is a conflict with what exists (409);
        // the rest is a form to correct (400).
        for (fields, status) in [
            (
                vec![
                    ("username", "dr.berg"),
                    ("display_name", "Another"),
                    ("role", "clinician"),
                    ("clinic", clinic_a.as_str()),
                ],
                409,
            ),
            (
                vec![
                    ("username", "x y"),
                    ("display_name", "Bad name"),
                    ("role", "auditor"),
                ],
                400,
            ),
            (
                vec![
                    ("username", "nobody"),
                    ("display_name", "No role"),
                    ("role", "system"),
                ],
                400,
            ),
            (
                vec![
                    ("username", "citizen-x"),
                    ("display_name", "No CPR"),
                    ("role", "patient"),
                    ("cpr", "0101"),
                ],
                400,
            ),
            (
                vec![
                    ("username", "dr.noclinic"),
                    ("display_name", "No clinic"),
                    ("role", "clinician"),
                ],
                400,
            ),
            // A second account for a citizen who has one would read their record unseen.
            (
                vec![
                    ("username", "anne-again"),
                    ("display_name", "Anne Jensen"),
                    ("role", "patient"),
                    ("cpr", anne_cpr.as_str()),
                ],
                409,
            ),
        ] {
            let page = admin.post("/admin/users", &fields).await;
            assert_eq!(page.status, status, "{fields:?}: {}", page.body);
        }
        assert_eq!(app.count("SELECT COUNT(*) FROM users").await, users);
    }
);

both_engines!(
    the_same_user_name_created_twice_at_once_is_one_user_and_one_conflict,
    |app: TestApp| async move {
        let mut admin = app.signed_in("admin").await;
        admin.get("/admin/users").await.assert_ok();
        // Two tabs of the same administrator send the same new user at the same moment, a few
        // times over: each pair gives one account and one conflict page, never a 500.
        for round in 0..4 {
            let username = format!("dr.twin{round}");
            let fields = [
                ("username", username.as_str()),
                ("display_name", "Dr. Twin"),
                ("role", "auditor"),
            ];
            let mut other_tab = admin.clone();
            let (a, b) = tokio::join!(
                admin.post("/admin/users", &fields),
                other_tab.post("/admin/users", &fields)
            );
            let mut statuses = [a.status, b.status];
            statuses.sort();
            assert_eq!(statuses, [200, 409], "{}\n{}", a.body, b.body);
            let conflict = if a.status == 409 { &a } else { &b };
            assert!(
                conflict
                    .select_text("[role=alert]")
                    .iter()
                    .any(|m| m == "That user name is taken."
                        || m.contains("created by someone else at the same moment")),
                "a page that says what happened: {}",
                conflict.body
            );
            assert_eq!(
                app.count(&format!(
                    "SELECT COUNT(*) FROM users WHERE username = '{username}'"
                ))
                .await,
                1
            );
            assert_eq!(
                app.count(&format!(
                    "SELECT COUNT(*) FROM audit_events WHERE action = 'create user' AND reason LIKE '%{username}%'"
                ))
                .await,
                1,
                "one audit event for the one account"
            );
        }
    }
);

both_engines!(
    disable_and_reset_take_effect_at_once,
    |app: TestApp| async move {
        let bo_user = app.text("SELECT id FROM users WHERE username = 'bo'").await;
        let mut bo = app.signed_in("bo").await;
        bo.get("/me").await.assert_ok();
        let mut admin = app.signed_in("admin").await;
        admin.get("/admin/users").await;
        admin
            .post(&format!("/admin/users/{bo_user}/disable"), &[])
            .await
            .assert_ok();
        assert!(
            bo.get("/me").await.is_login_page(),
            "a disabled user's session ends"
        );
        assert_eq!(app.browser().login("bo").await.status, 401);
        admin
            .post(&format!("/admin/users/{bo_user}/enable"), &[])
            .await
            .assert_ok();
        let reset = admin
            .post(&format!("/admin/users/{bo_user}/reset-password"), &[])
            .await;
        reset.assert_ok();
        let password = one_time_password(&reset);
        assert_eq!(
            app.browser().login("bo").await.status,
            401,
            "the old password is gone"
        );
        let mut again = app.browser();
        let forced = again.login_with("bo", &password).await;
        assert!(
            forced.url.ends_with("/account/password"),
            "must change at next login: {}",
            forced.url
        );
        assert!(again.get("/me").await.url.ends_with("/account/password"));
        let admin_id = app
            .text("SELECT id FROM users WHERE username = 'admin'")
            .await;
        assert_eq!(
            admin
                .post(&format!("/admin/users/{admin_id}/disable"), &[])
                .await
                .status,
            400
        );
        let audited = app.count("SELECT COUNT(*) FROM audit_events WHERE action IN ('disable user', 'enable user', 'reset password')").await;
        assert_eq!(audited, 3);
    }
);

both_engines!(
    listings_and_relationships_decide_access,
    |app: TestApp| async move {
        let bo = app
            .text("SELECT id FROM patients WHERE given_name = 'Bo' AND family_name = 'Nielsen'")
            .await;
        let bo_cpr = app.text("SELECT national_id FROM patients WHERE given_name = 'Bo' AND family_name = 'Nielsen'",
        )
        .await;
        let clinic_a = app
            .text("SELECT clinic_id FROM users WHERE username = 'dr.hansen'")
            .await;
        let larsen = app
            .text("SELECT id FROM users WHERE username = 'dr.larsen'")
            .await;
        let mut hansen = app.signed_in("dr.hansen").await;
        let mut admin = app.signed_in("admin").await;
        let record = format!("/clinician/patients/{bo}");
        assert_eq!(
            hansen.get(&record).await.status,
            403,
            "Bo is not Dr. Hansen's patient until the listing below"
        );

        admin.get("/admin/listings").await.assert_ok();
        let listed = admin
            .post(
                "/admin/listings",
                &[("cpr", &bo_cpr), ("clinic", &clinic_a)],
            )
            .await;
        listed.assert_ok();
        assert!(
            listed.select_text("[role=status]")[0].starts_with("Bo Nielsen is now listed with ")
        );
        hansen.get(&record).await.assert_ok();
        admin
            .post("/admin/listings", &[("cpr", &bo_cpr), ("clinic", "")])
            .await
            .assert_ok();
        assert_eq!(hansen.get(&record).await.status, 403);
        assert_eq!(
            admin
                .post("/admin/listings", &[("cpr", "not-a-cpr")])
                .await
                .status,
            400
        );

        let mut larsen_browser = app.signed_in("dr.larsen").await;
        assert_eq!(
            larsen_browser.get(&record).await.status,
            403,
            "unlisted, Bo is nobody's patient until the care relationship below"
        );
        admin.get("/admin/relationships").await.assert_ok();
        admin
            .post(
                "/admin/relationships",
                &[
                    ("clinician", &larsen),
                    ("cpr", &bo_cpr),
                    ("from", ""),
                    ("until", ""),
                    ("reason", "Referred for cardiology"),
                ],
            )
            .await
            .assert_ok();
        larsen_browser.get(&record).await.assert_ok();
        let relationship = app
            .text(&format!(
                "SELECT id FROM care_relationships WHERE patient_id = '{bo}'"
            ))
            .await;
        admin
            .post(&format!("/admin/relationships/{relationship}/end"), &[])
            .await
            .assert_ok();
        assert_eq!(larsen_browser.get(&record).await.status, 403);
        let again = admin
            .post(&format!("/admin/relationships/{relationship}/end"), &[])
            .await;
        assert_eq!(
            again.status, 409,
            "an ended relationship is not ended again"
        );
        let not_a_clinician = app
            .text("SELECT id FROM users WHERE username = 'auditor'")
            .await;
        let refused = admin
            .post(
                "/admin/relationships",
                &[
                    ("clinician", &not_a_clinician),
                    ("cpr", &bo_cpr),
                    ("reason", "x"),
                ],
            )
            .await;
        assert_eq!(refused.status, 400);
    }
);

both_engines!(
    clinics_are_managed_and_admins_see_no_clinical_data,
    |app: TestApp| async move {
        let mut admin = app.signed_in("admin").await;
        let list = admin.get("/admin/clinics").await;
        list.assert_ok();
        let made = admin
            .post(
                "/admin/clinics",
                &[
                    ("name", "Lægehuset Vesterbro"),
                    ("kind", "general_practice"),
                    ("address", "Istedgade 1"),
                    ("phone", "+45 33 00 00 00"),
                ],
            )
            .await;
        made.assert_ok();
        assert!(made.table_rows("table").iter().any(|row| row[..4]
            == [
                "Lægehuset Vesterbro",
                "general_practice",
                "Istedgade 1",
                "+45 33 00 00 00"
            ]));
        assert_eq!(
            admin
                .post(
                    "/admin/clinics",
                    &[("name", ""), ("kind", "general_practice")]
                )
                .await
                .status,
            400
        );
        assert_eq!(
            admin
                .post("/admin/clinics", &[("name", "X"), ("kind", "spaceport")])
                .await
                .status,
            400
        );

        let anne = app
            .text("SELECT id FROM patients WHERE given_name = 'Anne' AND family_name = 'Jensen'")
            .await;
        for path in [
            "/me".to_string(),
            "/me/labs".to_string(),
            format!("/clinician/patients/{anne}"),
            "/audit".to_string(),
        ] {
            assert_eq!(admin.get(&path).await.status, 403, "{path}");
        }
        for user in ["anne", "dr.hansen", "auditor"] {
            let mut b = app.signed_in(user).await;
            assert_eq!(b.get("/admin/users").await.status, 403, "{user}");
        }
    }
);

both_engines!(
    an_administrators_reset_or_disable_ends_the_users_sessions,
    |app: TestApp| async move {
        let bo_user = app.text("SELECT id FROM users WHERE username = 'bo'").await;
        let mut admin = app.signed_in("admin").await;
        admin.get("/admin/users").await;

        // Disabled and enabled again while the session sat unused: it must not come back.
        let mut bo = app.signed_in("bo").await;
        bo.get("/me").await.assert_ok();
        for action in ["disable", "enable"] {
            admin
                .post(&format!("/admin/users/{bo_user}/{action}"), &[])
                .await
                .assert_ok();
        }
        assert!(bo.get("/me").await.is_login_page(), "ended by disabling");

        let mut bo = app.signed_in("bo").await;
        bo.get("/me").await.assert_ok();
        admin
            .post(&format!("/admin/users/{bo_user}/reset-password"), &[])
            .await
            .assert_ok();
        assert!(bo.get("/me").await.is_login_page(), "ended by the reset");

        // A sign-in halfway through (password given, code not yet) cannot be finished either.
        let larsen_user = app
            .text("SELECT id FROM users WHERE username = 'dr.larsen'")
            .await;
        let larsen = support::demo("dr.larsen");
        let mut halfway = app.browser();
        let asked = halfway.login_with("dr.larsen", larsen.password).await;
        assert!(asked.url.ends_with("/login/second-factor"));
        admin
            .post(&format!("/admin/users/{larsen_user}/reset-password"), &[])
            .await
            .assert_ok();
        let code =
            support::fresh_totp(&app.base, "dr.larsen", larsen.totp.as_deref().unwrap()).await;
        let finished = halfway
            .post("/login/second-factor", &[("code", &code)])
            .await;
        assert!(finished.is_login_page(), "{}", finished.url);
    }
);

both_engines!(
    a_sign_in_with_an_administrators_password_is_shown_to_the_citizen,
    |app: TestApp| async move {
        let karen_user = app
            .text("SELECT id FROM users WHERE username = 'karen'")
            .await;
        let karen_patient = app
            .text("SELECT patient_id FROM users WHERE username = 'karen'")
            .await;
        let admin_name = app
            .text("SELECT display_name FROM users WHERE username = 'admin'")
            .await;
        let mut admin = app.signed_in("admin").await;
        admin.get("/admin/users").await;
        let reset = admin
            .post(&format!("/admin/users/{karen_user}/reset-password"), &[])
            .await;
        let issued = one_time_password(&reset);

        // Whoever holds the one-time password (here: the administrator) signs in as Karen.
        let mut holder = app.browser();
        holder.login_with("karen", &issued).await;
        let chosen = "a-password-someone-chose";
        holder
            .post(
                "/account/password",
                &[("current", &issued), ("new", chosen), ("confirm", chosen)],
            )
            .await
            .assert_ok();
        let overview = holder.get("/me").await;
        overview.assert_ok();
        assert!(has_issued_sign_in_notice(&overview));
        assert!(
            !overview.has("form[action='/me/sign-in-notice']"),
            "the session that used the password cannot dismiss the notice"
        );
        assert_eq!(holder.post("/me/sign-in-notice", &[]).await.status, 400);
        let events = app
            .count(&format!(
                "SELECT COUNT(*) FROM audit_events WHERE patient_id = '{karen_patient}' \
                 AND action = '{}'",
                access_control::accounts::ISSUED_SIGN_IN
            ))
            .await;
        assert_eq!(events, 1, "in the citizen's own chain");

        // Karen's next sign-in with a password of her own: told on the overview, and the
        // sign-in is in "who looked at my record", naming the administrator.
        let mut karen = app.browser();
        karen.login_with("karen", chosen).await.assert_ok();
        let overview = karen.get("/me").await;
        assert!(has_issued_sign_in_notice(&overview));
        assert!(overview
            .select_text("[role=alert] li")
            .iter()
            .any(|li| li.ends_with(&format!("(administrator: {admin_name})"))));
        let log = karen.get("/me/access-log").await;
        log.assert_ok();
        let issued = format!(
            "{admin_name} (administrator) issued the password your account was signed in with"
        );
        assert!(
            log.select_text("ol.access-log li p")
                .iter()
                .any(|p| p.starts_with(&issued)),
            "{}",
            log.body
        );
        karen.get("/me").await;
        karen.post("/me/sign-in-notice", &[]).await.assert_ok();
        assert!(!has_issued_sign_in_notice(&karen.get("/me").await));
        // An ordinary sign-in is no news.
        let mut later = app.browser();
        later.login_with("karen", chosen).await.assert_ok();
        assert!(!has_issued_sign_in_notice(&later.get("/me").await));
        assert_eq!(
            app.count(&format!(
                "SELECT COUNT(*) FROM audit_events WHERE action = '{}'",
                access_control::accounts::ISSUED_SIGN_IN
            ))
            .await,
            1
        );
    }
);

fn has_issued_sign_in_notice(overview: &Page) -> bool {
    overview
        .select_text("section[role=alert] h2")
        .iter()
        .any(|h| h == "Signed in with a password from an administrator")
}
