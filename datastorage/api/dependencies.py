"""Shared route dependencies: the running `Service` from the lifespan state."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request

from datastorage.service import Service


async def get_service(request: Request) -> Service:
    # async on purpose: FastAPI runs a plain function in a worker thread, a hop per request.
    return cast(Service, request.state.service)


ServiceDep = Annotated[Service, Depends(get_service)]
