"""Shared route dependencies: the running `Service` from the lifespan state."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request

from datastorage.service import Service


def service_of(request: Request) -> Service:
    """The service, for the write endpoints: a FastAPI dependency costs about 15 us of CPU per request
    to resolve, a sixth of what the app (routes, validation, answer) spends on a single event."""
    return cast(Service, request.scope["state"]["service"])


async def get_service(request: Request) -> Service:
    # async on purpose: FastAPI runs a plain function in a worker thread, a hop per request.
    return service_of(request)


ServiceDep = Annotated[Service, Depends(get_service)]
