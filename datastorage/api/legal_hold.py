"""`/api/v1/audit/legal-hold`: place a legal hold on a case (one correlation_id), and release it.

While a hold is in force, retention purges nothing of the case, whatever its
age; see `legalhold` for what placing and releasing do. Placing is safe to
repeat: 201 when this request placed the hold, 200 with the hold already in
force (unchanged) otherwise. 404 when the case has no stored events, or, on
release, no hold in force.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse

from datastorage.api.dependencies import ServiceDep
from datastorage.legalhold import LegalHold
from datastorage.problems import PROBLEM_MEDIA_TYPE
from datastorage.schemas import (
    NO_NUL_PATTERN,
    Accountable,
    LegalHoldReleaseResponse,
    LegalHoldRequest,
    LegalHoldResponse,
)
from datastorage.timestamps import format_timestamp

router = APIRouter(prefix="/api/v1/audit/legal-hold", tags=["legal hold"])


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/RFC7807Problem"}}},
    }


_UNAVAILABLE: Final = _problem("PostgreSQL unavailable; retry (RFC 7807)")


@router.post(
    "",
    operation_id="placeLegalHold",
    status_code=201,
    response_model=LegalHoldResponse,
    responses={
        200: {"model": LegalHoldResponse, "description": "a hold was in force already; it is unchanged"},
        404: _problem("no stored event has this correlation_id (RFC 7807)"),
        500: _problem("PostgreSQL refused the change (RFC 7807)"),
        503: _UNAVAILABLE,
    },
)
async def place_legal_hold(hold: LegalHoldRequest, service: ServiceDep) -> JSONResponse:
    """Holds every event of the case, and those that arrive while the hold is in force, from retention."""
    placed, is_new = await service.store.place_legal_hold(
        correlation_id=hold.correlation_id,
        reason=hold.reason,
        placed_by=hold.placed_by,
        placed_at=service.clock(),
    )
    return JSONResponse(_hold_json(placed), status_code=201 if is_new else 200)


@router.delete(
    "/{correlation_id:path}",
    operation_id="releaseLegalHold",
    response_model=LegalHoldReleaseResponse,
    responses={
        404: _problem("no legal hold is in force on this correlation_id (RFC 7807)"),
        503: _UNAVAILABLE,
    },
)
async def release_legal_hold(
    correlation_id: Annotated[str, Path(min_length=1, max_length=255, pattern=NO_NUL_PATTERN)],
    released_by: Annotated[Accountable, Query(description="who releases the hold, for the record")],
    service: ServiceDep,
) -> JSONResponse:
    """Ends the hold in force on the case; its events are purged again once past retention."""
    released = await service.store.release_legal_hold(
        correlation_id=correlation_id, released_by=released_by, released_at=service.clock()
    )
    body = {
        "correlation_id": released.correlation_id,
        "released_by": released.released_by,
        "released_at": format_timestamp(released.released_at),
        "events_released": released.events_released,
    }
    return JSONResponse(body)


def _hold_json(hold: LegalHold) -> dict[str, Any]:
    return {
        "correlation_id": hold.correlation_id,
        "reason": hold.reason,
        "placed_by": hold.placed_by,
        "placed_at": format_timestamp(hold.placed_at),
        "events_held": hold.events_held,
    }
