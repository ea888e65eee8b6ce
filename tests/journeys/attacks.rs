//! Proof of safety, part two: attack probes. Script payloads in every free-text field come back
//! escaped, SQL metacharacters are plain text, ids swapped between patients reach nothing,
//! stolen or replayed tokens and cookies are worthless, brute force meets the lock-out and the
//! throttle, and oversized bodies are refused.

use crate::support;

use support::TestApp;

const XSS: &str = "<script>alert('x')</script>\"><img src=x onerror=alert(1)>";
const XSS_ESCAPED: &str = "&lt;script&gt;alert('x')&lt;/script&gt;";
const SQL: &str = "'; DROP TABLE patients; -- %' OR '1'='1";

#[track_caller]
fn assert_escaped(page: &support::Page, what: &str) {
    assert!(
        !page.body.contains("<script>alert"),
        "raw script in {what}: {}",
        page.url
    );
    assert!(
        !page.body.contains("<img src=x"),
        "raw markup in {what}: {}",
        page.url
    );
}

async fn patient(app: &TestApp, given: &str, family: &str) -> String {
    app.text(&format!(
        "SELECT id FROM patients WHERE given_name = '{given}' AND family_name = '{family}'"
    ))
    .await
}

both_engines!(
    script_payloads_in_free_text_come_back_escaped,
    |app: TestApp| async move {
        let anne = patient(&app, "Anne", "Jensen").await;
        let base = format!("/clinician/patients/{anne}");
        let mut hansen = app.signed_in("dr.hansen").await;
        hansen.get(&format!("{base}/plans/new")).await;
        let goals = format!("{XSS} | {XSS} | active");
        hansen
            .post(
                &format!("{base}/plans"),
                &[
                    ("title", XSS),
                    ("description", XSS),
                    ("status", "active"),
                    ("goals", &goals),
                    ("activities", XSS),
                ],
            )
            .await
            .assert_ok();
        hansen.get(&format!("{base}/prescriptions")).await;
        hansen
            .post(
                &format!("{base}/prescriptions"),
                &[
                    ("medication_code", "N02BE01"),
                    ("medication_name", XSS),
                    ("dosage_text", XSS),
                ],
            )
            .await
            .assert_ok();
        let reflected = hansen
            .post(
                "/clinician/lookup",
                &[("name", XSS), ("birth_date", "1980-01-01")],
            )
            .await;
        assert_escaped(&reflected, "lookup form");

        let mut larsen = app.signed_in("dr.larsen").await;
        larsen.get(&format!("{base}/override")).await;
        let reason = format!("{XSS} emergency reason long enough");
        larsen
            .post(&format!("{base}/override"), &[("reason", &reason)])
            .await
            .assert_ok();

        let mut anne_b = app.signed_in("anne").await;
        for path in ["/me", "/me/plans", "/me/prescriptions", "/me/access-log"] {
            let page = anne_b.get(path).await;
            page.assert_ok();
            assert_escaped(&page, path);
        }
        let plans = anne_b.get("/me/plans").await;
        assert!(plans.contains(XSS_ESCAPED), "the text is shown, escaped");
        let event = app
            .text(&format!(
                "SELECT id FROM audit_events WHERE patient_id = '{anne}' ORDER BY seq DESC"
            ))
            .await;
        anne_b.get("/me/access-log").await;
        anne_b
            .post(
                &format!("/me/access-log/{event}/report"),
                &[("comment", XSS)],
            )
            .await
            .assert_ok();

        let mut auditor = app.signed_in("auditor").await;
        for page in [
            auditor.get("/audit/reviews").await,
            auditor.post("/audit", &[("action", XSS)]).await,
            auditor.post("/audit", &[]).await,
        ] {
            assert_escaped(&page, "audit workbench");
        }
        let mut admin = app.signed_in("admin").await;
        admin.get("/admin/clinics").await;
        admin
            .post("/admin/clinics", &[("name", XSS), ("kind", "hospital")])
            .await
            .assert_ok();
        admin.get("/admin/users").await;
        let made = admin
            .post(
                "/admin/users",
                &[
                    ("username", "xss.user"),
                    ("display_name", XSS),
                    ("role", "auditor"),
                ],
            )
            .await;
        made.assert_ok();
        assert_escaped(&made, "users page");
        for path in ["/admin/clinics", "/admin/relationships", "/admin/users"] {
            assert_escaped(&admin.get(path).await, path);
        }
        let mut patient_page = app.signed_in("anne").await;
        assert_escaped(&patient_page.get("/me/blocks").await, "blocks page");
    }
);

both_engines!(
    sql_metacharacters_are_plain_text,
    |app: TestApp| async move {
        let patients_before = app.count("SELECT COUNT(*) FROM patients").await;
        let mut hansen = app.signed_in("dr.hansen").await;
        hansen.get("/clinician").await;
        let hits = hansen
            .post(
                "/clinician/lookup",
                &[("name", SQL), ("birth_date", "1980-01-01")],
            )
            .await;
        hits.assert_ok();
        assert!(hits.contains("No patient matches"));
        let wildcard = hansen
            .post(
                "/clinician/lookup",
                &[("name", "%%"), ("birth_date", "1980-03-14")],
            )
            .await;
        assert!(
            wildcard.contains("No patient matches"),
            "LIKE wildcards are escaped"
        );
        let cpr = hansen.post("/clinician/lookup", &[("cpr", SQL)]).await;
        assert!(cpr.contains("role=\"alert\""));

        let mut auditor = app.signed_in("auditor").await;
        auditor.get("/audit").await;
        for field in ["action", "actor", "cpr", "outcome", "basis", "from"] {
            let page = auditor.post("/audit", &[(field, SQL)]).await;
            assert!(
                page.status == 200 || page.status == 400,
                "{field}: {}",
                page.status
            );
        }
        let mut admin = app.signed_in("admin").await;
        admin.get("/admin/users").await;
        assert_eq!(
            admin
                .post(
                    "/admin/users",
                    &[
                        ("username", SQL),
                        ("display_name", SQL),
                        ("role", "auditor")
                    ]
                )
                .await
                .status,
            400
        );
        admin.get("/admin/listings").await;
        assert_eq!(
            admin.post("/admin/listings", &[("cpr", SQL)]).await.status,
            400
        );
        let mut anne = app.signed_in("anne").await;
        anne.get("/me/proxies").await;
        assert_eq!(
            anne.post("/me/proxies/grant", &[("username", SQL)])
                .await
                .status,
            400
        );
        assert_eq!(
            app.count("SELECT COUNT(*) FROM patients").await,
            patients_before
        );
    }
);

both_engines!(
    ids_swapped_between_patients_reach_nothing,
    |app: TestApp| async move {
        let anne = patient(&app, "Anne", "Jensen").await;
        let karen = patient(&app, "Karen", "Poulsen").await;
        let anne_plan = app
            .text(&format!(
                "SELECT id FROM treatment_plans WHERE patient_id = '{anne}'"
            ))
            .await;
        let anne_rx = app
            .text(&format!(
                "SELECT id FROM prescriptions WHERE patient_id = '{anne}' AND status = 'active'"
            ))
            .await;
        let anne_held = app
            .text(&format!(
                "SELECT id FROM lab_results WHERE patient_id = '{anne}' AND released_at > '2090'"
            ))
            .await;
        // Dr. Hansen may open Karen's record; Anne's ids under Karen's URL must reach nothing.
        let mut hansen = app.signed_in("dr.hansen").await;
        let karen_base = format!("/clinician/patients/{karen}");
        hansen.get(&karen_base).await.assert_ok();
        assert_eq!(
            hansen
                .get(&format!("{karen_base}/plans/{anne_plan}"))
                .await
                .status,
            404
        );
        hansen.get(&format!("{karen_base}/plans")).await;
        let plan_post = hansen
            .post(
                &format!("{karen_base}/plans/{anne_plan}"),
                &[
                    ("title", "Hijacked"),
                    ("status", "active"),
                    ("version", "1"),
                ],
            )
            .await;
        assert_eq!(plan_post.status, 404);
        assert_eq!(
            hansen
                .post(
                    &format!("{karen_base}/prescriptions/{anne_rx}/stop"),
                    &[("reason", "Hijacked"), ("version", "1")]
                )
                .await
                .status,
            404
        );
        assert_eq!(
            hansen
                .post(&format!("{karen_base}/results/{anne_held}/release"), &[])
                .await
                .status,
            404
        );
        assert_eq!(
            app.count("SELECT COUNT(*) FROM treatment_plans WHERE title = 'Hijacked'")
                .await,
            0
        );
        assert_eq!(
            app.text(&format!(
                "SELECT status FROM prescriptions WHERE id = '{anne_rx}'"
            ))
            .await,
            "active"
        );
        assert!(app
            .text(&format!(
                "SELECT released_at FROM lab_results WHERE id = '{anne_held}'"
            ))
            .await
            .starts_with("2099"));
        // Malformed ids are a clear 4xx, never a server error.
        for path in [
            "/clinician/patients/not-a-uuid".to_string(),
            format!("{karen_base}/plans/1%27%20OR%201=1"),
        ] {
            let page = hansen.get(&path).await;
            assert!((400..500).contains(&page.status), "{path}: {}", page.status);
        }
    }
);

both_engines!(
    tokens_and_cookies_cannot_be_replayed,
    |app: TestApp| async move {
        // Another session's CSRF token is worthless.
        let mut anne = app.signed_in("anne").await;
        anne.get("/me/blocks").await;
        let annes_token = anne.csrf.clone().unwrap();
        let mut bo = app.signed_in("bo").await;
        bo.get("/me/blocks").await;
        let hansen = app
            .text("SELECT id FROM users WHERE username = 'dr.hansen'")
            .await;
        let target = format!("clinician:{hansen}");
        let forged = bo
            .post_raw("/me/blocks", &[("csrf", &annes_token), ("target", &target)])
            .await;
        assert_eq!(forged.status, 403);
        let missing = bo.post_raw("/me/blocks", &[("target", &target)]).await;
        assert_eq!(missing.status, 403);
        assert_eq!(app.count("SELECT COUNT(*) FROM blocks").await, 0);

        // A session cookie copied before logout opens nothing afterwards.
        let mut karen = app.browser();
        karen.login("karen").await.assert_ok();
        let mut thief = karen.copy().without_redirects();
        assert!(
            thief.cookie("portal").is_some(),
            "a session cookie to steal"
        );
        karen.logout().await;
        assert_eq!(
            thief.get("/me").await.status,
            303,
            "the old session is gone server-side"
        );
    }
);

both_engines!(
    brute_force_meets_lock_out_and_throttle,
    |app: TestApp| async move {
        let mut attacker = app.browser();
        for _ in 0..access_control::accounts::LOCK_AFTER_FAILURES {
            assert_eq!(
                attacker
                    .login_with("karen", "wrong-password-123")
                    .await
                    .status,
                401
            );
        }
        // Locked: even the right password is refused, with the same message.
        let right = attacker
            .login_with("karen", support::demo("karen").password)
            .await;
        assert_eq!(right.status, 401);
        assert!(right.contains(portal::auth::login::LOGIN_FAILED));
        let locked = app.count("SELECT COUNT(*) FROM audit_events WHERE action = 'login' AND reason = 'account locked'").await;
        assert_eq!(locked, 1, "the lock-out is audited");
        // The address throttle: a burst, then 429 with Retry-After.
        let mut statuses = Vec::new();
        for _ in 0..(portal::auth::throttle::BURST as usize) {
            statuses.push(
                attacker
                    .login_with("nobody", "wrong-password-123")
                    .await
                    .status,
            );
        }
        assert!(statuses.contains(&429), "{statuses:?}");
        let throttled = attacker.login_with("nobody", "wrong-password-123").await;
        assert_eq!(throttled.status, 429);
        assert!(throttled.headers.contains_key("retry-after"));
        // The throttle is per address: from here even a real user must wait.
        assert_eq!(
            app.browser().login("anne").await.status,
            429,
            "same address is still throttled"
        );
    }
);

both_engines!(oversized_bodies_are_refused, |app: TestApp| async move {
    let mut anne = app.signed_in("anne").await;
    anne.get("/me/access-log").await;
    let big = "x".repeat(200 * 1024);
    let event = app
        .text("SELECT id FROM audit_events ORDER BY seq LIMIT 1")
        .await;
    let page = anne
        .post(
            &format!("/me/access-log/{event}/report"),
            &[("comment", &big)],
        )
        .await;
    assert_eq!(page.status, 413);
    assert_eq!(app.count("SELECT COUNT(*) FROM audit_reviews").await, 0);
    for path in ["/", "/login", "/me", "/nowhere"] {
        let page = anne.get(path).await;
        for header in [
            "content-security-policy",
            "x-content-type-options",
            "referrer-policy",
            "x-frame-options",
        ] {
            assert!(page.headers.contains_key(header), "{header} on {path}");
        }
    }
});

both_engines!(
    concurrent_wrong_codes_get_no_more_verdicts_than_the_lock_out_allows,
    with | c | c.trusted_proxies = 1,
    |app: TestApp| async move {
        // The attacker has the password and many addresses; 30 guesses at once.
        let hansen = support::demo("dr.hansen");
        let mut attacker = app.browser_forwarded_for("198.51.100.1");
        let asked = attacker.login_with("dr.hansen", hansen.password).await;
        assert!(asked.url.ends_with("/login/second-factor"));
        let token = attacker.csrf.clone().unwrap();
        let guesses = (0..30).map(|i| {
            let mut tab = attacker
                .clone()
                .with_header("x-forwarded-for", &format!("198.51.100.{}", 10 + i));
            let (token, code) = (token.clone(), format!("{:06}", 100_000 + i));
            async move {
                let fields = [("csrf", token.as_str()), ("code", code.as_str())];
                tab.post_raw("/login/second-factor", &fields).await.status
            }
        });
        let statuses = futures::future::join_all(guesses).await;
        assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
        let lock_after = access_control::accounts::LOCK_AFTER_FAILURES;
        let counted = app
            .count("SELECT failed_logins FROM users WHERE username = 'dr.hansen'")
            .await;
        assert!(counted <= lock_after, "{counted} failures counted");
        let evaluated = app
            .count(
                "SELECT COUNT(*) FROM audit_events WHERE action = 'login' \
                 AND reason LIKE 'wrong second-factor code%'",
            )
            .await;
        assert!(
            evaluated <= lock_after,
            "{evaluated} codes evaluated, the lock-out allows {lock_after}"
        );
        let refused = app
            .count("SELECT COUNT(*) FROM audit_events WHERE reason = 'account locked'")
            .await;
        assert_eq!(evaluated + refused, 30, "every guess is audited");
        // Locked: even the right code is refused now.
        let code =
            support::fresh_totp(&app.base, "dr.hansen", hansen.totp.as_deref().unwrap()).await;
        let right = attacker
            .post("/login/second-factor", &[("code", &code)])
            .await;
        assert_eq!(right.status, 401);
    }
);

both_engines!(
    the_second_factor_step_is_throttled_per_address,
    |app: TestApp| async move {
        let hansen = support::demo("dr.hansen");
        let mut attacker = app.browser();
        attacker.login_with("dr.hansen", hansen.password).await;
        let mut statuses = Vec::new();
        for _ in 0..(portal::auth::throttle::BURST as usize) + 2 {
            let page = attacker
                .post("/login/second-factor", &[("code", "000000")])
                .await;
            statuses.push(page.status);
            if page.status == 429 {
                assert!(page.headers.contains_key("retry-after"));
            }
        }
        assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
        assert!(statuses[..5].iter().all(|s| *s == 401), "{statuses:?}");
        // The address is spent for sign-in as well: the throttle is one per address.
        assert_eq!(app.browser().login("anne").await.status, 429);
    }
);

both_engines!(
    a_spoofed_forwarded_for_entry_changes_neither_audit_nor_throttle,
    with | c | c.trusted_proxies = 1,
    |app: TestApp| async move {
        // The proxy appends the address it saw (203.0.113.9) to whatever the client sent.
        let mut b = app.browser_forwarded_for("6.6.6.6, 203.0.113.9");
        assert_eq!(b.login_with("anne", "wrong-password-123").await.status, 401);
        let recorded = app
            .text("SELECT client_addr FROM audit_events WHERE action = 'login' ORDER BY seq DESC")
            .await;
        assert_eq!(recorded, "203.0.113.9");
        assert_eq!(
            app.count("SELECT COUNT(*) FROM audit_events WHERE client_addr = '6.6.6.6'")
                .await,
            0
        );
        // A new spoofed entry each time buys no new attempts.
        let mut statuses = Vec::new();
        for i in 0..(portal::auth::throttle::BURST as usize) {
            let mut b = app.browser_forwarded_for(&format!("10.9.9.{i}, 203.0.113.9"));
            statuses.push(b.login_with("nobody", "wrong-password-123").await.status);
        }
        assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
        // Another client behind the same proxy is not affected.
        let mut other = app.browser_forwarded_for("6.6.6.6, 203.0.113.10");
        assert_eq!(
            other
                .login_with("nobody", "wrong-password-123")
                .await
                .status,
            401
        );
    }
);

both_engines!(
    unauthenticated_fhir_calls_are_throttled_and_recorded_once_per_address,
    |app: TestApp| async move {
        let before = app.count("SELECT COUNT(*) FROM audit_events").await;
        let mut anonymous = app.browser_without_redirects();
        let mut forger = app.browser_with_bearer("pp_not-a-token");
        let mut statuses = Vec::new();
        for i in 0..40 {
            let client = if i % 2 == 1 {
                &mut forger
            } else {
                &mut anonymous
            };
            let response = client.get("/fhir/r4/Patient").await;
            let status = response.status;
            let retry_after = response.headers.contains_key("retry-after");
            let body: serde_json::Value = serde_json::from_str(&response.body).unwrap();
            assert_eq!(body["resourceType"], "OperationOutcome");
            if status == 429 {
                assert!(retry_after, "429 says when to come back");
            }
            statuses.push(status);
        }
        assert_eq!(statuses[0], 401);
        assert_eq!(
            statuses.iter().filter(|s| **s == 401).count(),
            portal::auth::throttle::BURST as usize,
            "{statuses:?}"
        );
        assert_eq!(statuses.last(), Some(&429));
        let written = app.count("SELECT COUNT(*) FROM audit_events").await - before;
        assert_eq!(
            written, 1,
            "one audit event for the address, not one per call"
        );
    }
);
