"""`python -m controller [--config FILE]`: runs the SignalProcessing controller until SIGTERM/Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

import kopf

import controller.handlers  # noqa: F401 - registers the handlers
from controller.config import ConfigError, Settings, load_settings
from controller.readyz import Readiness


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m controller", description=__doc__)
    parser.add_argument("--config", type=Path, help="YAML settings file (environment variables override it)")
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings(arguments.config)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    asyncio.run(run(settings))
    return 0


async def run(settings: Settings) -> None:
    memo = kopf.Memo(settings=settings)
    namespaces = list(settings.kopf_namespaces)
    try:
        await kopf.operator(
            clusterwide=not namespaces,
            namespaces=namespaces,
            memo=memo,
            standalone=settings.peering is None,
            peering_name=settings.peering,
            liveness_endpoint=f"http://0.0.0.0:{settings.health_port}/healthz",
        )
    finally:
        # kopf runs no cleanup handler when it stops before its startup succeeded (a bad policy).
        readiness: Readiness | None = memo.get("readiness")
        if readiness is not None:
            await readiness.close()


if __name__ == "__main__":
    sys.exit(main())
