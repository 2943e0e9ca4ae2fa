"""`/api/v1/audit/verify-chain`: checks that the stored events of one correlation_id are as written.

Always 200 with the report when the chain could be read: `is_valid` false
means tampering (or damage) was found, and `tampered_events` says where. A
correlation_id with no events is a valid, empty chain (200, 0 events), since
an unknown chain and one whose events were all purged look alike to a client
that only asks whether anything was changed. 500 (`hash-key-unavailable`)
when the chain has keyed events and this instance has no key to check them.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from datastorage.api.dependencies import ServiceDep
from datastorage.schemas import ChainVerificationResponse, VerifyChainRequest
from datastorage.timestamps import format_timestamp
from datastorage.verification import ChainReport

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])


@router.post(
    "/verify-chain",
    operation_id="verifyAuditChain",
    response_model=ChainVerificationResponse,
    responses={500: {"description": "the chain has keyed events and this instance has no hash key"}},
)
async def verify_audit_chain(request: VerifyChainRequest, service: ServiceDep) -> JSONResponse:
    """Rehashes every stored event of the chain and follows its links to the chain head."""
    report = await service.store.verify_chain(request.correlation_id)
    return JSONResponse(_report_json(report, verified_at=format_timestamp(service.clock())))


def _report_json(report: ChainReport, *, verified_at: str) -> dict[str, Any]:
    return {
        "correlation_id": report.correlation_id,
        "is_valid": report.is_valid,
        "total_events": report.total_events,
        "verified_events": report.verified_events,
        "purged_events": report.purged_events,
        "tampered_events": [
            {
                "event_id": str(tampered.event_id),
                "event_timestamp": format_timestamp(tampered.event_timestamp),
                "expected_hash": tampered.expected_hash,
                "actual_hash": tampered.actual_hash,
                "previous_hash": tampered.previous_hash,
                "message": tampered.message,
            }
            for tampered in report.tampered_events
        ],
        "message": report.message,
        "verification_time": verified_at,
    }
