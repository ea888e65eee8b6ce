-- The rest of the clinical record a hospital sends (FHIR Encounter, Procedure and
-- DiagnosticReport), keyed like the others on (source_system, source_id).
CREATE TABLE contacts (
    id               TEXT PRIMARY KEY,
    patient_id       TEXT NOT NULL REFERENCES patients(id),
    type_system      TEXT NOT NULL,
    type_code        TEXT NOT NULL,
    type_display     TEXT NOT NULL,
    class            TEXT NOT NULL,
    status           TEXT NOT NULL,
    started_at       TEXT NOT NULL,
    ended_at         TEXT,
    place            TEXT NOT NULL,
    practitioner     TEXT NOT NULL,
    reason           TEXT,
    version          INTEGER NOT NULL DEFAULT 1,
    source_system    TEXT NOT NULL,
    source_id        TEXT NOT NULL,
    UNIQUE (source_system, source_id)
);
CREATE INDEX contacts_by_patient ON contacts (patient_id, started_at);

CREATE TABLE procedures (
    id               TEXT PRIMARY KEY,
    patient_id       TEXT NOT NULL REFERENCES patients(id),
    code_system      TEXT NOT NULL,
    code             TEXT NOT NULL,
    display          TEXT NOT NULL,
    status           TEXT NOT NULL,
    performed_at     TEXT NOT NULL,
    performed_until  TEXT,
    performer        TEXT NOT NULL,
    reason           TEXT,
    version          INTEGER NOT NULL DEFAULT 1,
    source_system    TEXT NOT NULL,
    source_id        TEXT NOT NULL,
    UNIQUE (source_system, source_id)
);
CREATE INDEX procedures_by_patient ON procedures (patient_id, performed_at);

-- The results a report groups are named (a JSON list); their values stay in lab_results,
-- under the hold-back rules of results.
CREATE TABLE reports (
    id               TEXT PRIMARY KEY,
    patient_id       TEXT NOT NULL REFERENCES patients(id),
    code_system      TEXT NOT NULL,
    code             TEXT NOT NULL,
    display          TEXT NOT NULL,
    category         TEXT,
    status           TEXT NOT NULL,
    effective_at     TEXT NOT NULL,
    issued_at        TEXT,
    performer        TEXT NOT NULL,
    conclusion       TEXT,
    results          TEXT NOT NULL,
    version          INTEGER NOT NULL DEFAULT 1,
    source_system    TEXT NOT NULL,
    source_id        TEXT NOT NULL,
    UNIQUE (source_system, source_id)
);
CREATE INDEX reports_by_patient ON reports (patient_id, effective_at);
