//! The foundation: the portal starts on both engines with the demo population, a citizen signs
//! in and sees their own record and nobody else's, and the basic protections are in place.

mod support;

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
        let page = app.browser().get("/login").await;
        let cookie = page
            .headers
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
            "{cookie}"
        );
    }
);

both_engines!(session_id_changes_at_sign_in, |app: TestApp| async move {
    let mut b = app.browser_without_redirects();
    let cookie = |page: &support::Page| {
        let header = page
            .headers
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        header.split(';').next().unwrap_or("").to_string()
    };
    let before = cookie(&b.get("/login").await);
    let signed_in = b
        .post(
            "/login",
            &[
                ("username", "anne"),
                ("password", support::demo("anne").password),
            ],
        )
        .await;
    assert_eq!(signed_in.status, 303);
    let after = cookie(&signed_in);
    assert!(!before.is_empty() && !after.is_empty());
    assert_ne!(
        before, after,
        "the pre-login session id must not survive sign-in"
    );
});
