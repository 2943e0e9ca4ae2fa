"""`python -m envtest assets` builds the binaries, `images` the test node's images; `up` runs a control
plane (with `--node`, a one-node cluster)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from envtest import assets, images
from envtest.controlplane import NODE_NAME, ControlPlane, ControlPlaneError
from envtest.crds import CrdFileError
from envtest.node import NodeError

_TOOLS = {tool.name: tool for tool in assets.ALL_TOOLS}


def _assets(arguments: argparse.Namespace) -> int:
    if arguments.tool:
        tool = _TOOLS[arguments.tool]
        assets.ensure([tool])
        print(tool.path if arguments.print_path else tool.directory)
        return 0
    assets.ensure(assets.ALL_TOOLS if arguments.all else [assets.ETCD, assets.KUBE_APISERVER])
    print(assets.control_plane_dir())
    return 0


def _images(arguments: argparse.Namespace) -> int:
    for archive in images.project_images().all:
        print(f"{archive.reference} {archive.path}")
    return 0


def _up(arguments: argparse.Namespace) -> int:
    stopping = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    node = images.project_images().node_images() if arguments.node else None
    plane = ControlPlane(
        crd_dirs=arguments.crds,
        kubeconfig=arguments.kubeconfig.resolve(),
        apiserver_port=arguments.port,
        node=node,
    )
    with plane:
        what = f"one-node cluster (node {NODE_NAME} Ready, images loaded)" if node else "control plane"
        print(
            f"{what} ready in {plane.started_in:.1f}s at {plane.server_url}; "
            f"kubeconfig {plane.kubeconfig} (export KUBECONFIG={plane.kubeconfig}); Ctrl-C stops it",
            flush=True,
        )
        stopping.wait()
    print("one-node cluster stopped" if node else "control plane stopped", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m envtest", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("assets", help="build missing binaries and print their directory")
    build.add_argument("--all", action="store_true", help="also OPA and helm")
    build.add_argument("--tool", choices=sorted(_TOOLS), help="only this tool")
    build.add_argument("--print-path", action="store_true", help="with --tool: print the binary's path")
    build.set_defaults(handler=_assets)
    pictures = commands.add_parser(
        "images", help="build the test cluster's missing images; print each one's reference and archive"
    )
    pictures.set_defaults(handler=_images)
    run = commands.add_parser("up", help="start etcd + kube-apiserver until Ctrl-C or SIGTERM")
    run.add_argument("--kubeconfig", type=Path, required=True, help="where to write the kubeconfig")
    run.add_argument("--crds", type=Path, action="append", default=[], help="a directory of CRD files")
    run.add_argument("--port", type=int, help="kube-apiserver's secure port (default: a free one)")
    run.add_argument(
        "--node",
        action="store_true",
        help="also a node that runs Pods: kubelet, kube-proxy, containerd, controller-manager, scheduler,"
        " with the project's images loaded (python -m envtest images builds them)",
    )
    run.set_defaults(handler=_up)
    arguments = parser.parse_args(argv)
    try:
        return int(arguments.handler(arguments))
    except (assets.AssetBuildError, ControlPlaneError, NodeError, CrdFileError, TimeoutError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
