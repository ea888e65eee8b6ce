"""Fixtures of the FHIR client suite, and the validator every response passes through: each JSON
body that names a resourceType is parsed strictly by fhir.resources 5.1.1 (FHIR R4 4.0.1
models), Bundle entries included, so a response no client could read fails the test it came in.
"""
import importlib
import os
import pathlib

import pytest
import requests
from fhirpy import SyncFHIRClient

ROOT = pathlib.Path(__file__).resolve().parents[2]
BASE = os.environ["FHIR_BASE"]
VALIDATED = []


def model(kind):
    return getattr(importlib.import_module(f"fhir.resources.{kind.lower()}"), kind)


def validate(response, *args, **kwargs):
    if not response.content or "json" not in response.headers.get("Content-Type", ""):
        return response
    body = response.json()
    if isinstance(body, dict) and "resourceType" in body:
        model(body["resourceType"])(body)  # raises on any deviation from R4
        for entry in body.get("entry", []) if body["resourceType"] == "Bundle" else []:
            for part in ("resource",):
                if part in entry:
                    model(entry[part]["resourceType"])(entry[part])
            outcome = entry.get("response", {}).get("outcome")
            if outcome:
                model("OperationOutcome")(outcome)
        VALIDATED.append(body["resourceType"])
    return response


def client(token):
    return SyncFHIRClient(BASE, authorization=f"Bearer {token}",
                          requests_config={"hooks": {"response": [validate]}})


@pytest.fixture(scope="session")
def tokens():
    return {"lab": os.environ["LAB_TOKEN"], "lab_name": os.environ["LAB_NAME"],
            "anne": os.environ["ANNE_TOKEN"], "anne_patient_only": os.environ["ANNE_PATIENT_ONLY_TOKEN"]}


@pytest.fixture(scope="session")
def anne_token(tokens):
    return tokens["anne"]


@pytest.fixture(scope="session")
def lab(tokens):
    return client(tokens["lab"])


@pytest.fixture(scope="session")
def anne_client(tokens):
    return client(tokens["anne"])


@pytest.fixture(scope="session")
def http():
    session = requests.Session()
    session.hooks["response"].append(validate)

    def call(method, path, token, headers=None, **kwargs):
        sent = {"Accept": "application/fhir+json"}
        if token:
            sent["Authorization"] = f"Bearer {token}"
        if "json" in kwargs:
            sent["Content-Type"] = "application/fhir+json"
        sent.update(headers or {})
        return session.request(method, f"{BASE}{path}", headers=sent, **kwargs)

    return call


@pytest.fixture(scope="session")
def anne(anne_client):
    """The demo citizen Anne Jensen, as her own patient/*.read token sees herself."""
    (patient,) = anne_client.resources("Patient").fetch_all()
    cpr = next(i["value"] for i in patient["identifier"] if i.get("use") == "official")
    return {"id": patient.id, "cpr": cpr}


def pytest_sessionfinish(session, exitstatus):
    print(f"\nfhir client suite: {len(VALIDATED)} responses validated against FHIR R4")
