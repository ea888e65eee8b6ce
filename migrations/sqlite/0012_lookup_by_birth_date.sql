-- A GP's lookup by name and birth date finds the birth date in an index, so it stays flat as
-- the population grows. The overview's "new since your last visit" is read from the audit log
-- itself now, so the visits table is gone.
CREATE INDEX patients_by_birth_date ON patients (birth_date);
DROP TABLE patient_visits;
