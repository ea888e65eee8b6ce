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
    leaf_index  INTEGER PRIMARY KEY,
    event_id    TEXT NOT NULL UNIQUE,
    chain_key   TEXT NOT NULL,
    seq         INTEGER NOT NULL
);
-- Perfect subtrees, each stored once when its last leaf arrives (hex SHA-256): any root or
-- proof is a few point reads of these.
CREATE TABLE audit_log_nodes (
    level       INTEGER NOT NULL,
    node_index  INTEGER NOT NULL,
    hash        TEXT NOT NULL,
    PRIMARY KEY (level, node_index)
);
-- The tree's size and its frontier (the roots of its perfect subtrees, hex, concatenated).
CREATE TABLE audit_log_head (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    size      INTEGER NOT NULL,
    frontier  TEXT NOT NULL
);
INSERT INTO audit_log_head (id, size, frontier) VALUES (1, 0, '');
-- Signed checkpoints (C2SP signed notes), one per size the signer saw.
CREATE TABLE audit_checkpoints (
    size       INTEGER PRIMARY KEY,
    root       TEXT NOT NULL,
    note       TEXT NOT NULL,
    signed_at  TEXT NOT NULL
);
-- A witness's cosignature line of a checkpoint, checked against its configured key.
CREATE TABLE audit_checkpoint_cosignatures (
    size       INTEGER NOT NULL REFERENCES audit_checkpoints(size),
    witness    TEXT NOT NULL,
    signature  TEXT NOT NULL,
    PRIMARY KEY (size, witness)
);

CREATE TRIGGER audit_log_leaves_no_update BEFORE UPDATE ON audit_log_leaves
BEGIN SELECT RAISE(ABORT, 'audit_log_leaves is append-only'); END;
CREATE TRIGGER audit_log_leaves_no_delete BEFORE DELETE ON audit_log_leaves
BEGIN SELECT RAISE(ABORT, 'audit_log_leaves is append-only'); END;
CREATE TRIGGER audit_log_nodes_no_update BEFORE UPDATE ON audit_log_nodes
BEGIN SELECT RAISE(ABORT, 'audit_log_nodes is append-only'); END;
CREATE TRIGGER audit_log_nodes_no_delete BEFORE DELETE ON audit_log_nodes
BEGIN SELECT RAISE(ABORT, 'audit_log_nodes is append-only'); END;
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END;
CREATE TRIGGER audit_checkpoint_cosignatures_no_update BEFORE UPDATE ON audit_checkpoint_cosignatures
BEGIN SELECT RAISE(ABORT, 'audit_checkpoint_cosignatures is append-only'); END;
CREATE TRIGGER audit_checkpoint_cosignatures_no_delete BEFORE DELETE ON audit_checkpoint_cosignatures
BEGIN SELECT RAISE(ABORT, 'audit_checkpoint_cosignatures is append-only'); END;
CREATE TRIGGER audit_log_head_only_grows BEFORE UPDATE ON audit_log_head
WHEN NEW.size < OLD.size
BEGIN SELECT RAISE(ABORT, 'audit_log_head only grows'); END;

-- Events logged before the tree existed join it first.
INSERT INTO audit_log_queue (event_id) SELECT id FROM audit_events;
