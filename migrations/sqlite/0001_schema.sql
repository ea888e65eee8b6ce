-- Portable schema: identifiers are UUID text, times are fixed-width UTC text
-- (YYYY-MM-DDTHH:MM:SS.ffffffZ, so text order is time order), flags are integers.
-- The PostgreSQL twin of this file differs only in column types and trigger syntax.

CREATE TABLE clinics (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    address     TEXT NOT NULL,
    phone       TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

CREATE TABLE patients (
    id             TEXT PRIMARY KEY,
    national_id    TEXT NOT NULL UNIQUE,
    given_name     TEXT NOT NULL,
    family_name    TEXT NOT NULL,
    birth_date     TEXT NOT NULL,
    sex            TEXT NOT NULL,
    gp_clinic_id   TEXT REFERENCES clinics(id),
    source_system  TEXT NOT NULL,
    source_id      TEXT NOT NULL,
    original_identifier TEXT,
    created_at     TEXT NOT NULL,
    UNIQUE (source_system, source_id)
);
CREATE INDEX patients_by_name ON patients (family_name, given_name, birth_date);
CREATE INDEX patients_by_clinic ON patients (gp_clinic_id);

CREATE TABLE users (
    id                    TEXT PRIMARY KEY,
    username              TEXT NOT NULL UNIQUE,
    display_name          TEXT NOT NULL,
    password_hash         TEXT NOT NULL,
    role                  TEXT NOT NULL CHECK (role IN ('patient', 'clinician', 'auditor', 'administrator')),
    patient_id            TEXT REFERENCES patients(id),
    clinic_id             TEXT REFERENCES clinics(id),
    totp_secret           TEXT,
    failed_logins         INTEGER NOT NULL DEFAULT 0,
    locked_until          TEXT,
    disabled              INTEGER NOT NULL DEFAULT 0,
    must_change_password  INTEGER NOT NULL DEFAULT 0,
    created_at            TEXT NOT NULL
);
CREATE INDEX users_by_patient ON users (patient_id);

CREATE TABLE recovery_codes (
    user_id    TEXT NOT NULL REFERENCES users(id),
    code_hash  TEXT NOT NULL,
    used_at    TEXT,
    PRIMARY KEY (user_id, code_hash)
);

CREATE TABLE lab_results (
    id              TEXT PRIMARY KEY,
    patient_id      TEXT NOT NULL REFERENCES patients(id),
    code_system     TEXT NOT NULL,
    code            TEXT NOT NULL,
    display         TEXT NOT NULL,
    value_numeric   REAL,
    value_text      TEXT,
    unit            TEXT,
    reference_low   REAL,
    reference_high  REAL,
    interpretation  TEXT NOT NULL,
    status          TEXT NOT NULL,
    effective_at    TEXT NOT NULL,
    issued_at       TEXT NOT NULL,
    performing_lab  TEXT NOT NULL,
    released_at     TEXT NOT NULL,
    version         INTEGER NOT NULL DEFAULT 1,
    source_system   TEXT NOT NULL,
    source_id       TEXT NOT NULL,
    UNIQUE (source_system, source_id)
);
CREATE INDEX lab_results_by_patient ON lab_results (patient_id, code, effective_at);

CREATE TABLE prescriptions (
    id                 TEXT PRIMARY KEY,
    patient_id         TEXT NOT NULL REFERENCES patients(id),
    medication_system  TEXT NOT NULL,
    medication_code    TEXT NOT NULL,
    medication_name    TEXT NOT NULL,
    dosage_text        TEXT NOT NULL,
    status             TEXT NOT NULL,
    authored_at        TEXT NOT NULL,
    prescriber         TEXT NOT NULL,
    valid_from         TEXT NOT NULL,
    valid_until        TEXT,
    stop_reason        TEXT,
    version            INTEGER NOT NULL DEFAULT 1,
    source_system      TEXT NOT NULL,
    source_id          TEXT NOT NULL,
    UNIQUE (source_system, source_id)
);
CREATE INDEX prescriptions_by_patient ON prescriptions (patient_id, status);

CREATE TABLE treatment_plans (
    id             TEXT PRIMARY KEY,
    patient_id     TEXT NOT NULL REFERENCES patients(id),
    title          TEXT NOT NULL,
    description    TEXT NOT NULL,
    status         TEXT NOT NULL,
    period_start   TEXT NOT NULL,
    period_end     TEXT,
    author         TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    version        INTEGER NOT NULL DEFAULT 1,
    source_system  TEXT NOT NULL,
    source_id      TEXT NOT NULL,
    UNIQUE (source_system, source_id)
);
CREATE INDEX treatment_plans_by_patient ON treatment_plans (patient_id, status);

CREATE TABLE plan_goals (
    id           TEXT PRIMARY KEY,
    plan_id      TEXT NOT NULL REFERENCES treatment_plans(id) ON DELETE CASCADE,
    position     INTEGER NOT NULL,
    description  TEXT NOT NULL,
    target       TEXT,
    status       TEXT NOT NULL
);
CREATE INDEX plan_goals_by_plan ON plan_goals (plan_id, position);

CREATE TABLE plan_activities (
    id           TEXT PRIMARY KEY,
    plan_id      TEXT NOT NULL REFERENCES treatment_plans(id) ON DELETE CASCADE,
    position     INTEGER NOT NULL,
    description  TEXT NOT NULL,
    status       TEXT NOT NULL
);
CREATE INDEX plan_activities_by_plan ON plan_activities (plan_id, position);

CREATE TABLE care_relationships (
    id            TEXT PRIMARY KEY,
    clinician_id  TEXT NOT NULL REFERENCES users(id),
    patient_id    TEXT NOT NULL REFERENCES patients(id),
    valid_from    TEXT NOT NULL,
    valid_until   TEXT,
    reason        TEXT NOT NULL,
    created_at    TEXT NOT NULL
);
CREATE INDEX care_relationships_by_patient ON care_relationships (patient_id, clinician_id);

CREATE TABLE proxies (
    id             TEXT PRIMARY KEY,
    patient_id     TEXT NOT NULL REFERENCES patients(id),
    proxy_user_id  TEXT NOT NULL REFERENCES users(id),
    kind           TEXT NOT NULL CHECK (kind IN ('guardian', 'power_of_attorney')),
    valid_from     TEXT NOT NULL,
    valid_until    TEXT,
    revoked_at     TEXT,
    created_at     TEXT NOT NULL
);
CREATE INDEX proxies_by_user ON proxies (proxy_user_id);
CREATE INDEX proxies_by_patient ON proxies (patient_id);

CREATE TABLE blocks (
    id            TEXT PRIMARY KEY,
    patient_id    TEXT NOT NULL REFERENCES patients(id),
    clinician_id  TEXT REFERENCES users(id),
    clinic_id     TEXT REFERENCES clinics(id),
    valid_from    TEXT NOT NULL,
    valid_until   TEXT,
    lifted_at     TEXT,
    created_at    TEXT NOT NULL,
    CHECK ((clinician_id IS NULL) <> (clinic_id IS NULL))
);
CREATE INDEX blocks_by_patient ON blocks (patient_id);

CREATE TABLE emergency_accesses (
    id            TEXT PRIMARY KEY,
    clinician_id  TEXT NOT NULL REFERENCES users(id),
    patient_id    TEXT NOT NULL REFERENCES patients(id),
    reason        TEXT NOT NULL,
    granted_at    TEXT NOT NULL,
    expires_at    TEXT NOT NULL
);
CREATE INDEX emergency_accesses_by_patient ON emergency_accesses (patient_id, clinician_id, expires_at);

-- One row per hash chain (a patient, or 'system'): the head that the next append links to.
-- Appending updates this row first, which serialises appends to one chain and no other.
CREATE TABLE audit_chains (
    chain_key  TEXT PRIMARY KEY,
    last_seq   INTEGER NOT NULL,
    last_hash  TEXT NOT NULL
);

CREATE TABLE audit_events (
    id               TEXT PRIMARY KEY,
    chain_key        TEXT NOT NULL,
    seq              INTEGER NOT NULL,
    occurred_at      TEXT NOT NULL,
    actor_id         TEXT,
    actor_name       TEXT NOT NULL,
    actor_role       TEXT NOT NULL,
    actor_clinic_id  TEXT,
    on_behalf_of     TEXT,
    patient_id       TEXT,
    action           TEXT NOT NULL,
    resource_type    TEXT NOT NULL,
    resource_id      TEXT,
    basis            TEXT NOT NULL,
    outcome          TEXT NOT NULL,
    reason           TEXT NOT NULL,
    client_addr      TEXT NOT NULL,
    prev_hash        TEXT NOT NULL,
    hash             TEXT NOT NULL,
    UNIQUE (chain_key, seq)
);
CREATE INDEX audit_events_by_time ON audit_events (occurred_at, id);
CREATE INDEX audit_events_by_patient ON audit_events (patient_id, occurred_at, id);
CREATE INDEX audit_events_by_actor ON audit_events (actor_id, occurred_at, id);
CREATE INDEX audit_events_by_clinic ON audit_events (actor_clinic_id, occurred_at, id);

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;

-- Review state of an audit event (patient's "I don't recognise this", override review).
-- Mutable on purpose; every change to it is itself an audit event.
CREATE TABLE audit_reviews (
    id               TEXT PRIMARY KEY,
    event_id         TEXT NOT NULL REFERENCES audit_events(id),
    patient_id       TEXT,
    kind             TEXT NOT NULL,
    comment          TEXT NOT NULL,
    status           TEXT NOT NULL,
    resolution_note  TEXT,
    opened_at        TEXT NOT NULL,
    closed_at        TEXT,
    closed_by        TEXT,
    UNIQUE (event_id, kind)
);
CREATE INDEX audit_reviews_by_status ON audit_reviews (status, opened_at);

CREATE TABLE patient_visits (
    user_id        TEXT NOT NULL,
    patient_id     TEXT NOT NULL,
    last_seen_at   TEXT NOT NULL,
    PRIMARY KEY (user_id, patient_id)
);
