-- One portal account per citizen: a second account tied to the same CPR number would read the
-- record as "own record", hidden from the patient's access log.
DROP INDEX users_by_patient;
CREATE UNIQUE INDEX users_one_per_patient ON users (patient_id);

-- The auditor's filters on action, outcome and basis, and the patient's report list, each get
-- an index ending in (time, id) so that keyset paging stays fast on rare values.
CREATE INDEX audit_events_by_action ON audit_events (action, occurred_at, id);
CREATE INDEX audit_events_by_outcome ON audit_events (outcome, occurred_at, id);
CREATE INDEX audit_events_by_basis ON audit_events (basis, occurred_at, id);
CREATE INDEX audit_reviews_by_patient ON audit_reviews (patient_id, kind, opened_at);

-- The application role's rights over every table, including those created since 0006, and for
-- tables that later migrations create; still no changes to the audit log or the prune window.
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO portal_app;
REVOKE UPDATE, DELETE, TRUNCATE ON audit_events FROM portal_app;
REVOKE INSERT, UPDATE, DELETE ON audit_prune_window FROM portal_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO portal_app;
