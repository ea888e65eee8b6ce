//! The foundation: the portal starts on both engines with the demo population, a citizen signs
//! in and sees their own record and nobody else's, and the basic protections are in place.

use crate::support;

use support::TestApp;

both_engines!(health_and_readiness, |app: TestApp| async move {
    let mut b = app.browser();
    let page = b.get("/healthz").await;
    assert_eq!((page.status, page.body.as_str()), (200, "ok"));
    assert_eq!(b.get("/readyz").await.status, 200);
});

both_engines!(
    patient_signs_in_and_sees_own_record,
    |app: TestApp| async move {
        let mut anne = app.browser();
        let page = anne.login("anne").await;
        page.assert_ok();
        assert!(
            page.url.ends_with("/me"),
            "lands on the overview: {}",
            page.url
        );
        assert!(page.contains("Anne Jensen"));
        assert!(page.contains("your own record"));
        assert!(page.contains("Latest lab results"));
        assert!(page.contains("HbA1c"), "has lab results");
        assert!(page.contains("Active prescriptions"));
        assert!(page.contains("Current treatment plans"));
        assert!(
            page.contains("Some results may be pending"),
            "a held-back result exists for Anne"
        );
        assert!(!page.contains("Bo Nielsen"));
    }
);

both_engines!(patients_see_nobody_elses_data, |app: TestApp| async move {
    let mut bo = app.signed_in("bo").await;
    let page = bo.get("/me").await;
    page.assert_ok();
    assert!(page.contains("Bo Nielsen"));
    assert!(!page.contains("Anne Jensen"));
});

both_engines!(
    wrong_password_and_unknown_user_get_the_same_answer,
    |app: TestApp| async move {
        let mut b = app.browser();
        let wrong = b.login_with("anne", "not-the-password").await;
        let unknown = b.login_with("nobody-here", "not-the-password").await;
        assert_eq!(wrong.status, 401);
        assert_eq!(unknown.status, 401);
        let message = portal::auth::login::LOGIN_FAILED;
        assert!(wrong.contains(message) && unknown.contains(message));
        assert!(
            b.get("/me").await.is_login_page(),
            "no session after failed logins"
        );
    }
);

both_engines!(
    pages_require_sign_in_and_logout_ends_the_session,
    |app: TestApp| async move {
        let mut b = app.browser();
        assert!(b.get("/me").await.is_login_page());
        b.login("anne").await.assert_ok();
        assert!(b.get("/me").await.contains("Anne Jensen"));
        let after = b.logout().await;
        assert!(after.is_login_page());
        assert!(b.get("/me").await.is_login_page());
    }
);

both_engines!(staff_need_the_second_factor, |app: TestApp| async move {
    let mut b = app.browser();
    let page = b
        .login_with("dr.hansen", support::demo("dr.hansen").password)
        .await;
    assert!(page.url.ends_with("/login/second-factor"));
    let wrong = b.post("/login/second-factor", &[("code", "000000")]).await;
    assert_eq!(wrong.status, 401);
    assert!(
        b.get("/me").await.is_login_page(),
        "password alone does not sign staff in"
    );
});

both_engines!(
    forms_without_the_csrf_token_are_refused,
    |app: TestApp| async move {
        let mut b = app.browser();
        b.get("/login").await;
        let page = b
            .post_raw(
                "/login",
                &[
                    ("username", "anne"),
                    ("password", support::demo("anne").password),
                ],
            )
            .await;
        assert_eq!(page.status, 403);
        let page = b
            .post_raw(
                "/login",
                &[
                    ("csrf", "forged"),
                    ("username", "anne"),
                    ("password", support::demo("anne").password),
                ],
            )
            .await;
        assert_eq!(page.status, 403);
        assert!(b.get("/me").await.is_login_page());
    }
);

both_engines!(
    every_response_carries_the_security_headers,
    |app: TestApp| async move {
        let mut b = app.browser();
        for path in ["/login", "/healthz", "/no-such-page", "/static/portal.css"] {
            let page = b.get(path).await;
            let csp = page
                .headers
                .get("content-security-policy")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            assert!(
                csp.contains("default-src 'self'")
                    && csp.contains("frame-ancestors 'none'")
                    && csp.contains("object-src 'none'"),
                "{path}"
            );
            assert_eq!(
                page.headers.get("x-content-type-options").unwrap(),
                "nosniff"
            );
            assert_eq!(page.headers.get("referrer-policy").unwrap(), "no-referrer");
        }
    }
);

both_engines!(
    session_cookie_is_http_only_and_strict,
    |app: TestApp| async move {
        let set_cookie = |page: &support::Page| {
            page.headers
                .get_all("set-cookie")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        let mut b = app.browser_without_redirects();
        let form = set_cookie(&b.get("/login").await);
        let signed_in = set_cookie(
            &b.post(
                "/login",
                &[
                    ("username", "anne"),
                    ("password", support::demo("anne").password),
                ],
            )
            .await,
        );
        assert!(
            signed_in.iter().any(|c| c.starts_with("portal=")),
            "{signed_in:?}"
        );
        for cookie in form.iter().chain(&signed_in) {
            assert!(
                cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
                "{cookie}"
            );
        }
    }
);

both_engines!(session_id_changes_at_sign_in, |app: TestApp| async move {
    // The session before sign-in is the one that waits for the second factor.
    let mut b = app.browser_without_redirects();
    let session = |page: &support::Page| {
        page.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|c| c.starts_with("portal="))
            .map(|c| c.split(';').next().unwrap_or("").to_string())
    };
    b.get("/login").await;
    let hansen = support::demo("dr.hansen");
    let pending = b
        .post(
            "/login",
            &[("username", "dr.hansen"), ("password", hansen.password)],
        )
        .await;
    assert_eq!(pending.status, 303);
    let before = session(&pending).expect("a session for the second step");
    b.get("/login/second-factor").await;
    let code = support::fresh_totp(&app.base, "dr.hansen", hansen.totp.as_deref().unwrap()).await;
    let signed_in = b.post("/login/second-factor", &[("code", &code)]).await;
    assert_eq!(signed_in.status, 303);
    let after = session(&signed_in).expect("the signed-in session");
    assert_ne!(
        before, after,
        "the pre-login session id must not survive sign-in"
    );
});

both_engines!(
    the_sign_in_form_stores_nothing_and_its_token_is_signed,
    |app: TestApp| async move {
        let sessions = app.sessions().await;
        let audit = app.count("SELECT COUNT(*) FROM audit_events").await;
        for _ in 0..50 {
            app.browser().get("/login").await.assert_ok();
        }
        let mut b = app.browser();
        b.get("/login").await;
        assert_eq!(b.login_with("nobody", "wrong-password-1").await.status, 401);
        assert_eq!(
            app.sessions().await,
            sessions,
            "no session row for anyone not signed in"
        );
        assert_eq!(
            app.count("SELECT COUNT(*) FROM audit_events").await,
            audit + 1,
            "only the failed sign-in is audited"
        );

        // The token is bound to the browser's own cookie, signed, and expires.
        let mut b = app.browser();
        b.get("/login").await;
        let good = b.csrf.clone().unwrap();
        let credentials = [
            ("username", "anne"),
            ("password", support::demo("anne").password),
        ];
        let mut other = app.browser();
        other.get("/login").await;
        let others = other.csrf.clone().unwrap();
        let (expiry, mac) = good.split_once('.').unwrap();
        let stretched = format!("{}.{mac}", expiry.parse::<i64>().unwrap() + 86_400);
        let nonce = b.cookie("portal-login").unwrap();
        let key = portal::auth::csrf::LoginKey::from_hex(
            &app.text("SELECT secret FROM server_keys WHERE name = 'login_csrf'")
                .await,
        )
        .unwrap();
        let expired = key.token(&nonce, time::OffsetDateTime::now_utc().unix_timestamp() - 1);
        for forged in [others.as_str(), &stretched, &expired, "1.forged"] {
            let mut form = vec![("csrf", forged)];
            form.extend_from_slice(&credentials);
            assert_eq!(b.post_raw("/login", &form).await.status, 403, "{forged}");
        }
        let mut without_cookie = app.browser();
        let mut form = vec![("csrf", good.as_str())];
        form.extend_from_slice(&credentials);
        assert_eq!(without_cookie.post_raw("/login", &form).await.status, 403);
        assert_eq!(app.sessions().await, sessions);

        let page = b.post_raw("/login", &form).await;
        assert!(page.url.ends_with("/me"), "signs in: {}", page.url);
        assert_eq!(app.sessions().await, sessions + 1);
    }
);
