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
