//! Medicine renewal requests, from the patient's click to the GP's answer: asked once per
//! prescription, refused to guardians, queued for the patient's GP clinic, renewed as a new
//! prescription or declined with a reason the patient reads, every step decided and audited.
//! On both engines.

use crate::support;

use support::TestApp;

/// An active prescription of Anne's: (id, medicine).
async fn active_prescription(app: &TestApp, anne: &str) -> (String, String) {
    let id = app
        .text(&format!("SELECT id FROM prescriptions WHERE patient_id = '{anne}' AND status = 'active' ORDER BY medication_name LIMIT 1"))
        .await;
    let name = app
        .text(&format!(
            "SELECT medication_name FROM prescriptions WHERE id = '{id}'"
        ))
        .await;
    (id, name)
}

both_engines!(
    a_patient_asks_and_the_gp_renews_or_declines,
    |app: TestApp| async move {
        let anne = app
            .text("SELECT id FROM patients WHERE given_name = 'Anne' AND family_name = 'Jensen'")
            .await;
        let (prescription, medicine) = active_prescription(&app, &anne).await;
        let mut patient = app.signed_in("anne").await;
        let card = patient.get("/me/prescriptions").await;
        assert!(card.contains(&format!("Ask for renewal of {medicine}")));
        let path = format!("/me/prescriptions/{prescription}/renewal");
        let asked = patient
            .post(
                &path,
                &[("message", "Running out next week, same dose please")],
            )
            .await;
        asked.assert_ok();
        assert!(asked.contains("Waiting for your GP"));
        assert!(
            !asked.contains(&format!("Ask for renewal of {medicine}")),
            "no second request while one is open"
        );
        let again = patient.post(&path, &[("message", "again")]).await;
        assert_eq!(again.status, 409, "one open request per prescription");
        assert_eq!(
            app.count(&format!(
                "SELECT COUNT(*) FROM renewal_requests WHERE prescription_id = '{prescription}'"
            ))
            .await,
            1
        );
        assert_eq!(
            app.count(&format!("SELECT COUNT(*) FROM audit_events WHERE patient_id = '{anne}' AND action = 'request renewal' AND outcome = 'allowed'"))
                .await,
            1,
            "the request is audited with its decision; the refused second try changed nothing"
        );
        let missing = patient
            .post(
                &format!("/me/prescriptions/{}/renewal", uuid::Uuid::nil()),
                &[],
            )
            .await;
        assert_eq!(missing.status, 404);

        // A guardian cannot ask on a child's behalf, and is not offered to.
        let emil = app
            .text("SELECT id FROM patients WHERE given_name = 'Emil' AND family_name = 'Jensen'")
            .await;
        let mut guardian = app.signed_in("anne").await;
        guardian
            .post("/me/switch", &[("patient", &emil)])
            .await
            .assert_ok();
        assert!(!guardian
            .get("/me/prescriptions")
            .await
            .contains("Ask for renewal"));
        let child_rx = app
            .text(&format!(
                "SELECT id FROM prescriptions WHERE patient_id = '{emil}' LIMIT 1"
            ))
            .await;
        if !child_rx.is_empty() {
            let refused = guardian
                .post(&format!("/me/prescriptions/{child_rx}/renewal"), &[])
                .await;
            assert_eq!(refused.status, 403);
        }

        // The GP's clinic sees the request in its queue and on the medicine card.
        let mut gp = app.signed_in("dr.hansen").await;
        let queue = gp.get("/clinician/renewals").await;
        queue.assert_ok();
        assert!(queue.contains("Anne Jensen"));
        let card = gp
            .get(&format!("/clinician/patients/{anne}/prescriptions"))
            .await;
        assert!(card.contains("Running out next week, same dose please"));
        let request = app
            .text(&format!(
                "SELECT id FROM renewal_requests WHERE prescription_id = '{prescription}'"
            ))
            .await;
        let answer = format!("/clinician/patients/{anne}/renewals/{request}");
        let no_reason = gp
            .post(&format!("{answer}/decline"), &[("reason", "")])
            .await;
        assert_eq!(no_reason.status, 400, "a decline says why");
        // A clinician without a relationship cannot answer it.
        let mut stranger = app.signed_in("dr.larsen").await;
        assert!(!stranger
            .get("/clinician/renewals")
            .await
            .contains("Anne Jensen"));
        let refused = stranger
            .post(&format!("{answer}/renew"), &[("valid_until", "")])
            .await;
        assert_eq!(refused.status, 403);

        let renewed = gp
            .post(&format!("{answer}/renew"), &[("valid_until", "")])
            .await;
        renewed.assert_ok();
        let new_id = app
            .text(&format!("SELECT renewal_id FROM renewal_requests WHERE id = '{request}' AND status = 'renewed'"))
            .await;
        assert_eq!(
            app.text(&format!("SELECT medication_name FROM prescriptions WHERE id = '{new_id}' AND status = 'active'")).await,
            medicine,
            "a new prescription of the same medicine, linked to the request"
        );
        let twice = gp
            .post(
                &format!("{answer}/decline"),
                &[("reason", "changed my mind")],
            )
            .await;
        assert_eq!(
            twice.status, 409,
            "an answered request is not answered again"
        );
        assert!(!gp.get("/clinician/renewals").await.contains("Anne Jensen"));
        let seen = patient.get("/me/prescriptions").await;
        assert!(seen
            .table_rows("table")
            .iter()
            .any(|r| r[0] == medicine && r[3] == "Renewed"));

        // A second request for the same medicine can now be declined, with the reason shown.
        patient.get("/me/prescriptions").await;
        patient.post(&path, &[]).await.assert_ok();
        let second = app
            .text(&format!("SELECT id FROM renewal_requests WHERE prescription_id = '{prescription}' AND status = 'open'"))
            .await;
        gp.get(&format!("/clinician/patients/{anne}/prescriptions"))
            .await;
        gp.post(
            &format!("/clinician/patients/{anne}/renewals/{second}/decline"),
            &[("reason", "Please book a check-up first")],
        )
        .await
        .assert_ok();
        let seen = patient.get("/me/prescriptions").await;
        assert!(seen.contains("Declined") && seen.contains("Please book a check-up first"));
        app.assert_audit_log_intact().await;
    }
);
