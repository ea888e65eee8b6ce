-- The evidence around the audit log is append-only too (security review, issue 11).
--
-- 1. A patient's "I don't recognise this" report and the auditor's answer: the database refuses
--    to change or delete either, and the application role lacks the privilege. Closing a review
--    no longer updates the report; it appends the answer to audit_review_closures (one per
--    review: a second close is a conflict). Both may be deleted only by a prune, as the schema
--    owner, together with the audit event they are about (see 0007).
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
ALTER TABLE audit_reviews
    DROP COLUMN status,
    DROP COLUMN resolution_note,
    DROP COLUMN closed_at,
    DROP COLUMN closed_by;
CREATE INDEX audit_reviews_by_time ON audit_reviews (opened_at, id);

-- Deletable only when the audit event the row is about may be pruned.
CREATE FUNCTION audit_event_prunable(event_id TEXT) RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT COALESCE((
        SELECT e.occurred_at < COALESCE((SELECT before FROM audit_prune_window WHERE id = 1), '')
           AND e.occurred_at < to_char(now() AT TIME ZONE 'UTC' - interval '10 years',
                                       'YYYY-MM-DD"T"HH24:MI:SS"Z"')
        FROM audit_events e WHERE e.id = $1), false)
$$;

CREATE FUNCTION audit_reviews_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND audit_event_prunable(OLD.event_id) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_reviews is append-only';
END;
$$;
CREATE TRIGGER audit_reviews_no_update BEFORE UPDATE OR DELETE ON audit_reviews
    FOR EACH ROW EXECUTE FUNCTION audit_reviews_refuse_change();
CREATE TRIGGER audit_reviews_no_truncate BEFORE TRUNCATE ON audit_reviews
    FOR EACH STATEMENT EXECUTE FUNCTION audit_reviews_refuse_change();

CREATE FUNCTION audit_review_closures_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND audit_event_prunable(
        (SELECT event_id FROM audit_reviews WHERE id = OLD.review_id)) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_review_closures is append-only';
END;
$$;
CREATE TRIGGER audit_review_closures_no_update BEFORE UPDATE OR DELETE ON audit_review_closures
    FOR EACH ROW EXECUTE FUNCTION audit_review_closures_refuse_change();
CREATE TRIGGER audit_review_closures_no_truncate BEFORE TRUNCATE ON audit_review_closures
    FOR EACH STATEMENT EXECUTE FUNCTION audit_review_closures_refuse_change();

-- The application role reads and appends reports and answers, never changes them (the new
-- table got the default privileges of 0008, UPDATE and DELETE among them).
GRANT SELECT, INSERT ON audit_review_closures TO portal_app;
REVOKE UPDATE, DELETE, TRUNCATE ON audit_reviews, audit_review_closures FROM portal_app;

-- 2. Client addresses: the hash of an event covers a commitment to the address, not the
--    address, so that the patient's copy of the chain verifies without showing staff network
--    addresses. client_addr_commitment = hex(HMAC-SHA256(client_addr_key, client_addr)) with a
--    random key per event, kept here beside the address for auditors and never given out with
--    the chain. Events stored before this migration have neither (NULL) and keep the encoding
--    their hash was made with (see access_control::audit).
ALTER TABLE audit_events
    ADD COLUMN client_addr_key TEXT,
    ADD COLUMN client_addr_commitment TEXT;
