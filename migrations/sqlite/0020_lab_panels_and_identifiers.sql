-- A panel (blood pressure) is kept as its components, each with the panel's code and name, so
-- that the panel code finds them and FHIR serves the panel as one Observation again.
ALTER TABLE lab_results ADD COLUMN panel_code TEXT;
ALTER TABLE lab_results ADD COLUMN panel_display TEXT;
-- The source's identifier of the Observation, as system|value.
ALTER TABLE lab_results ADD COLUMN identifier TEXT;
