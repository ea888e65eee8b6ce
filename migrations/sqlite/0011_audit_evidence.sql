-- The evidence around the audit log is append-only too (security review, issue 11).
--
-- 1. A patient's "I don't recognise this" report and the auditor's answer: the database refuses
--    to change or delete either. Closing a review no longer updates the report; it appends the
--    answer to audit_review_closures (one per review: a second close is a conflict). Both may be
--    deleted only by a prune, together with the audit event they are about (see 0007).
CREATE TABLE audit_review_closures (
    review_id  TEXT PRIMARY KEY REFERENCES audit_reviews(id),
    note       TEXT NOT NULL,
    closed_at  TEXT NOT NULL,
    closed_by  TEXT NOT NULL
);
INSERT INTO audit_review_closures (review_id, note, closed_at, closed_by)
    SELECT id, COALESCE(resolution_note, ''), COALESCE(closed_at, opened_at), COALESCE(closed_by, '')
    FROM audit_reviews WHERE status = 'closed';
DROP INDEX audit_reviews_by_status;
ALTER TABLE audit_reviews DROP COLUMN status;
ALTER TABLE audit_reviews DROP COLUMN resolution_note;
ALTER TABLE audit_reviews DROP COLUMN closed_at;
ALTER TABLE audit_reviews DROP COLUMN closed_by;
CREATE INDEX audit_reviews_by_time ON audit_reviews (opened_at, id);

CREATE TRIGGER audit_reviews_no_update BEFORE UPDATE ON audit_reviews
BEGIN SELECT RAISE(ABORT, 'audit_reviews is append-only'); END;
-- A missing event (impossible with foreign keys on) counts as not prunable.
CREATE TRIGGER audit_reviews_no_delete BEFORE DELETE ON audit_reviews
WHEN NOT COALESCE((
    SELECT e.occurred_at < COALESCE((SELECT before FROM audit_prune_window WHERE id = 1), '')
       AND e.occurred_at < strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '-10 years')
    FROM audit_events e WHERE e.id = OLD.event_id), 0)
BEGIN SELECT RAISE(ABORT, 'audit_reviews is append-only'); END;

CREATE TRIGGER audit_review_closures_no_update BEFORE UPDATE ON audit_review_closures
BEGIN SELECT RAISE(ABORT, 'audit_review_closures is append-only'); END;
CREATE TRIGGER audit_review_closures_no_delete BEFORE DELETE ON audit_review_closures
WHEN NOT COALESCE((
    SELECT e.occurred_at < COALESCE((SELECT before FROM audit_prune_window WHERE id = 1), '')
       AND e.occurred_at < strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '-10 years')
    FROM audit_reviews r JOIN audit_events e ON e.id = r.event_id WHERE r.id = OLD.review_id), 0)
BEGIN SELECT RAISE(ABORT, 'audit_review_closures is append-only'); END;

-- 2. Client addresses: the hash of an event covers a commitment to the address, not the
--    address, so that the patient's copy of the chain verifies without showing staff network
--    addresses. client_addr_commitment = hex(HMAC-SHA256(client_addr_key, client_addr)) with a
--    random key per event, kept here beside the address for auditors and never given out with
--    the chain. Events stored before this migration have neither (NULL) and keep the encoding
--    their hash was made with (see access_control::audit).
ALTER TABLE audit_events ADD COLUMN client_addr_key TEXT;
ALTER TABLE audit_events ADD COLUMN client_addr_commitment TEXT;
