-- Every version of a resource written through FHIR or `portal import`, as the portal served
-- it then: vread and _history read past versions from here, and written_at is the version's
-- meta.lastUpdated. Rows are written in the same transaction as the record they describe.
CREATE TABLE resource_versions (
    resource_type TEXT NOT NULL,
    resource_id   TEXT NOT NULL,
    version       INTEGER NOT NULL,
    patient_id    TEXT NOT NULL REFERENCES patients(id),
    written_at    TEXT NOT NULL,
    body          TEXT NOT NULL,
    PRIMARY KEY (resource_type, resource_id, version)
);
CREATE INDEX resource_versions_by_patient ON resource_versions (patient_id, resource_type, written_at);
-- A patient's demographics change too; their version is what ETag and If-Match compare.
ALTER TABLE patients ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
