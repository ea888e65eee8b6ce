-- Deletion past the retention period without breaking the chains: a pruned chain keeps the
-- hash of its last deleted event as its anchor (audit_chains.pruned_*), and the prune itself is
-- recorded in the system chain. The database allows a DELETE only of events older than the
-- prune window set in the same transaction AND older than ten years, whatever the caller says.
ALTER TABLE audit_chains ADD COLUMN pruned_through_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE audit_chains ADD COLUMN pruned_hash TEXT NOT NULL DEFAULT '0000000000000000000000000000000000000000000000000000000000000000';

CREATE TABLE audit_prune_window (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    before TEXT NOT NULL
);

DROP TRIGGER audit_events_no_delete;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
WHEN NOT (OLD.occurred_at < COALESCE((SELECT before FROM audit_prune_window WHERE id = 1), '')
          AND OLD.occurred_at < strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '-10 years'))
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
