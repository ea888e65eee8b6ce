-- Three more parts of the health record (FHIR Condition, AllergyIntolerance, Immunization),
-- keyed like the others on (source_system, source_id) so that a re-import updates.
CREATE TABLE diagnoses (
    id               TEXT PRIMARY KEY,
    patient_id       TEXT NOT NULL REFERENCES patients(id),
    code_system      TEXT NOT NULL,
    code             TEXT NOT NULL,
    display          TEXT NOT NULL,
    clinical_status  TEXT NOT NULL,
    onset_at         TEXT,
    abated_at        TEXT,
    recorded_at      TEXT,
    recorder         TEXT NOT NULL,
    version          INTEGER NOT NULL DEFAULT 1,
    source_system    TEXT NOT NULL,
    source_id        TEXT NOT NULL,
    UNIQUE (source_system, source_id)
);
CREATE INDEX diagnoses_by_patient ON diagnoses (patient_id, clinical_status);

-- Reactions are a list that is only ever read and written with its allergy: kept as JSON.
CREATE TABLE allergies (
    id               TEXT PRIMARY KEY,
    patient_id       TEXT NOT NULL REFERENCES patients(id),
    code_system      TEXT NOT NULL,
    code             TEXT NOT NULL,
    substance        TEXT NOT NULL,
    clinical_status  TEXT NOT NULL,
    criticality      TEXT,
    category         TEXT,
    reactions        TEXT NOT NULL,
    recorded_at      TEXT,
    recorder         TEXT NOT NULL,
    version          INTEGER NOT NULL DEFAULT 1,
    source_system    TEXT NOT NULL,
    source_id        TEXT NOT NULL,
    UNIQUE (source_system, source_id)
);
CREATE INDEX allergies_by_patient ON allergies (patient_id, clinical_status);

CREATE TABLE vaccinations (
    id               TEXT PRIMARY KEY,
    patient_id       TEXT NOT NULL REFERENCES patients(id),
    vaccine_system   TEXT NOT NULL,
    vaccine_code     TEXT NOT NULL,
    vaccine_name     TEXT NOT NULL,
    status           TEXT NOT NULL,
    occurred_at      TEXT NOT NULL,
    lot_number       TEXT,
    site             TEXT,
    performer        TEXT NOT NULL,
    version          INTEGER NOT NULL DEFAULT 1,
    source_system    TEXT NOT NULL,
    source_id        TEXT NOT NULL,
    UNIQUE (source_system, source_id)
);
CREATE INDEX vaccinations_by_patient ON vaccinations (patient_id, occurred_at);
