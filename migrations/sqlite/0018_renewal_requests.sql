-- A patient's request to renew a prescription, and the GP's answer. At most one open request
-- per prescription: the partial unique index closes the race two clicks would otherwise win.
CREATE TABLE renewal_requests (
    id                TEXT PRIMARY KEY,
    patient_id        TEXT NOT NULL REFERENCES patients(id),
    prescription_id   TEXT NOT NULL REFERENCES prescriptions(id),
    requested_by      TEXT NOT NULL,
    requested_by_name TEXT NOT NULL,
    message           TEXT NOT NULL,
    status            TEXT NOT NULL,
    requested_at      TEXT NOT NULL,
    answered_at       TEXT,
    answered_by       TEXT,
    answer            TEXT,
    renewal_id        TEXT REFERENCES prescriptions(id)
);
CREATE UNIQUE INDEX renewal_requests_one_open ON renewal_requests (prescription_id)
    WHERE status = 'open';
CREATE INDEX renewal_requests_by_patient ON renewal_requests (patient_id, requested_at);
CREATE INDEX renewal_requests_open ON renewal_requests (status, requested_at);
