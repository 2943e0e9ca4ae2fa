"""Command line: `python -m debian_packages install PACKAGE...`, what `make servers` runs for the test node.

Installs those of the packages that are missing, or prints one line saying
there is nothing to do. Exit code 1, with the reason, when they cannot be
installed; 2 for a usage error (no package named, for example because the
command that was to list them failed).
"""

from __future__ import annotations

import argparse
import sys

from debian_packages import DebianError, install


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m debian_packages", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    installing = commands.add_parser("install", help="install those of the packages that are missing")
    installing.add_argument("packages", nargs="+", metavar="PACKAGE", help="a Debian package name")
    args = parser.parse_args(argv)
    try:
        install(args.packages)
    except DebianError as error:
        print(f"debian_packages: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
