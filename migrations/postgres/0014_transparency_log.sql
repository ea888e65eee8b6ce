-- The transparency log (issue 14): one RFC 9162 Merkle tree over every audit event, in the
-- order the sequencer took them, with signed checkpoints of it (access_control::audit::log).
--
-- Appending an event also queues it; the sequencer moves queued events into the tree in
-- batches and signs a checkpoint of the new size. Appends therefore never wait for one
-- another on the tree, only the sequencer serialises (on the head row).
CREATE TABLE audit_log_queue (
    event_id  TEXT PRIMARY KEY
);
-- Every event that was ever logged, by its position: which event a leaf is. No foreign key:
-- an event pruned past retention leaves its leaf (and its hash in the tree) behind.
CREATE TABLE audit_log_leaves (
    leaf_index  BIGINT PRIMARY KEY,
    event_id    TEXT NOT NULL UNIQUE,
    chain_key   TEXT NOT NULL,
    seq         BIGINT NOT NULL
);
-- Perfect subtrees, each stored once when its last leaf arrives (hex SHA-256): any root or
-- proof is a few point reads of these.
CREATE TABLE audit_log_nodes (
    level       BIGINT NOT NULL,
    node_index  BIGINT NOT NULL,
    hash        TEXT NOT NULL,
    PRIMARY KEY (level, node_index)
);
-- The tree's size and its frontier (the roots of its perfect subtrees, hex, concatenated).
CREATE TABLE audit_log_head (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    size      BIGINT NOT NULL,
    frontier  TEXT NOT NULL
);
INSERT INTO audit_log_head (id, size, frontier) VALUES (1, 0, '');
-- Signed checkpoints (C2SP signed notes), one per size the signer saw.
CREATE TABLE audit_checkpoints (
    size       BIGINT PRIMARY KEY,
    root       TEXT NOT NULL,
    note       TEXT NOT NULL,
    signed_at  TEXT NOT NULL
);
-- A witness's cosignature line of a checkpoint, checked against its configured key.
CREATE TABLE audit_checkpoint_cosignatures (
    size       BIGINT NOT NULL REFERENCES audit_checkpoints(size),
    witness    TEXT NOT NULL,
    signature  TEXT NOT NULL,
    PRIMARY KEY (size, witness)
);

CREATE FUNCTION audit_log_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END;
$$;
DO $$
DECLARE t TEXT;
BEGIN
    FOREACH t IN ARRAY ARRAY['audit_log_leaves', 'audit_log_nodes', 'audit_checkpoints',
                             'audit_checkpoint_cosignatures'] LOOP
        EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON %I FOR EACH ROW '
                       'EXECUTE FUNCTION audit_log_refuse_change()', t || '_no_change', t);
        EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I FOR EACH STATEMENT '
                       'EXECUTE FUNCTION audit_log_refuse_change()', t || '_no_truncate', t);
    END LOOP;
END
$$;
CREATE FUNCTION audit_log_head_only_grows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.size < OLD.size THEN
        RAISE EXCEPTION 'audit_log_head only grows';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER audit_log_head_only_grows BEFORE UPDATE ON audit_log_head
    FOR EACH ROW EXECUTE FUNCTION audit_log_head_only_grows();

-- The application role appends to the log and moves the head; it never changes what was
-- logged (the new tables got the default privileges of 0008, UPDATE and DELETE among them).
REVOKE UPDATE, DELETE, TRUNCATE ON audit_log_leaves, audit_log_nodes, audit_checkpoints,
    audit_checkpoint_cosignatures FROM portal_app;
REVOKE DELETE, TRUNCATE ON audit_log_head FROM portal_app;

-- Events logged before the tree existed join it first.
INSERT INTO audit_log_queue (event_id) SELECT id FROM audit_events;
