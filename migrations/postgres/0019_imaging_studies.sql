-- Imaging studies: the record keeps what was imaged and where; the images stay in the
-- hospital's archive, found there by the study's identifier (its DICOM UID).
CREATE TABLE imaging_studies (
    id               TEXT PRIMARY KEY,
    patient_id       TEXT NOT NULL REFERENCES patients(id),
    status           TEXT NOT NULL,
    started_at       TEXT NOT NULL,
    modality         TEXT NOT NULL,
    body_site        TEXT,
    description      TEXT,
    series           BIGINT NOT NULL,
    instances        BIGINT NOT NULL,
    performer            TEXT NOT NULL,
    identifier       TEXT,
    version          BIGINT NOT NULL DEFAULT 1,
    source_system    TEXT NOT NULL,
    source_id        TEXT NOT NULL,
    UNIQUE (source_system, source_id)
);
CREATE INDEX imaging_studies_by_patient ON imaging_studies (patient_id, started_at);
