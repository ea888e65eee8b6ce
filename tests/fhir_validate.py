#!/usr/bin/env python3
"""Validate every FHIR resource the test suite received from the portal against FHIR R4 (4.0.1)
with fhir.resources 5.1.1: model classes generated from the official R4 specification by SMART
Health IT's fhir-parser. It rejects unknown elements, missing required elements and wrong types.

Usage: fhir_validate.py DIR   (DIR holds one JSON resource per file, written by tests/fhir.rs)
"""
import importlib
import json
import pathlib
import sys

import fhir.resources.resource  # noqa: F401  (fails early if the package is missing)

EXPECTED = {"CapabilityStatement", "Bundle", "OperationOutcome", "Patient", "Observation",
            "MedicationRequest", "CarePlan", "AuditEvent", "Condition", "AllergyIntolerance",
            "Immunization", "Encounter", "DiagnosticReport", "ImagingStudy"}


def model(kind):
    return getattr(importlib.import_module(f"fhir.resources.{kind.lower()}"), kind)


def validate(resource, where, seen):
    kind = resource["resourceType"]
    seen.add(kind)
    model(kind)(resource)  # strict: raises on any deviation
    for i, entry in enumerate(resource.get("entry", []) if kind == "Bundle" else []):
        if "resource" in entry:
            validate(entry["resource"], f"{where} entry[{i}]", seen)
    for contained in resource.get("contained", []):
        seen.add(contained["resourceType"])


def main():
    folder = pathlib.Path(sys.argv[1])
    files = sorted(folder.glob("*.json"))
    seen, failures = set(), []
    for path in files:
        try:
            validate(json.loads(path.read_text()), path.name, seen)
        except Exception as error:  # report every failure, not just the first
            failures.append(f"{path.name}: {error}")
    for failure in failures:
        print("INVALID", failure)
    missing = EXPECTED - seen
    if missing:
        print("no resource of these types was checked:", ", ".join(sorted(missing)))
    print(f"fhir validation: {len(files) - len(failures)} passed, {len(failures)} failed")
    sys.exit(1 if failures or missing else 0)


if __name__ == "__main__":
    main()
