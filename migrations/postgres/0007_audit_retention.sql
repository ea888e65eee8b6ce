-- Deletion past the retention period without breaking the chains: a pruned chain keeps the
-- hash of its last deleted event as its anchor (audit_chains.pruned_*), and the prune itself is
-- recorded in the system chain. The database allows a DELETE only of events older than the
-- prune window set in the same transaction AND older than ten years, whatever the caller says;
-- the application role has no DELETE privilege at all, so pruning runs as the schema owner.
ALTER TABLE audit_chains
    ADD COLUMN pruned_through_seq BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN pruned_hash TEXT NOT NULL DEFAULT '0000000000000000000000000000000000000000000000000000000000000000';

CREATE TABLE audit_prune_window (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    before TEXT NOT NULL
);
GRANT SELECT ON audit_prune_window TO portal_app;

CREATE OR REPLACE FUNCTION audit_events_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.occurred_at < COALESCE((SELECT before FROM audit_prune_window WHERE id = 1), '')
           AND OLD.occurred_at < to_char(now() AT TIME ZONE 'UTC' - interval '10 years',
                                         'YYYY-MM-DD"T"HH24:MI:SS"Z"') THEN
            RETURN OLD;
        END IF;
    END IF;
    RAISE EXCEPTION 'audit_events is append-only';
END;
$$;
