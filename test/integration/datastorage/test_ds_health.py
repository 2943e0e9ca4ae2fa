"""Health, readiness, liveness, metrics and the OpenAPI document."""

from __future__ import annotations

import httpx

from test.integration.datastorage.support import EVENTS_PATH, counter, make_event, metric


def test_health_reports_the_database(ds_client: httpx.Client) -> None:
    response = ds_client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "healthy", "database": "connected"}


def test_ready_and_live(ds_client: httpx.Client) -> None:
    assert ds_client.get("/health/ready").json() == {"status": "ready"}
    assert ds_client.get("/health/live").json() == {"status": "alive"}


def test_readyz_is_readiness_under_kubernauts_path(ds_client: httpx.Client) -> None:
    response = ds_client.get("/readyz")

    assert (response.status_code, response.json()) == (200, {"status": "ready"})


def test_metrics_count_stored_events(ds_client: httpx.Client, correlation_id: str) -> None:
    # One label set for both reads; before is 0 if the worker's shared DataStorage stored none yet.
    stored = {"service": "orchestration", "status": "success"}
    before = counter(ds_client, "datastorage_audit_traces_total", **stored)
    ds_client.post(
        EVENTS_PATH, json=make_event(correlation_id, event_category="orchestration")
    ).raise_for_status()

    response = ds_client.get("/metrics")

    assert response.headers["content-type"].startswith("text/plain")
    after = metric(ds_client, "datastorage_audit_traces_total", **stored)
    assert after == before + 1
    for name in (
        "datastorage_write_duration_seconds",
        "datastorage_dlq_depth",
        "datastorage_validation_failures",
    ):
        assert name in response.text


def test_the_openapi_document_describes_the_audit_api(ds_client: httpx.Client) -> None:
    document = ds_client.get("/openapi.json").json()

    operations = {
        operation["operationId"]: (path, method, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if "operationId" in operation and operation["operationId"][0].islower()
    }
    assert {"createAuditEvent", "createAuditEventsBatch", "queryAuditEvents"} <= operations.keys()
    for name in ("createAuditEvent", "createAuditEventsBatch", "queryAuditEvents"):
        responses = operations[name][2]["responses"]
        assert "422" not in responses
        assert "application/problem+json" in responses["400"]["content"]
    assert "202" in operations["createAuditEvent"][2]["responses"]
    schemas = document["components"]["schemas"]
    assert set(schemas["AuditEventRequest"]["required"]) == {
        "version",
        "event_type",
        "event_timestamp",
        "event_category",
        "event_action",
        "event_outcome",
        "correlation_id",
        "event_data",
    }
    assert "RFC7807Problem" in schemas
