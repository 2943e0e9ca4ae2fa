"""The owner chain: controller owners only, owners only, at most five, ending quietly on any trouble."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from controller import kube
from controller.ownerchain import MAX_OWNERS, controller_owner, read_owner_chain
from controller.signalprocessing import OwnerRef

from .fakes import FakeReader, obj, owner

NS = "shop"


@pytest.mark.parametrize(
    ("owners", "expected"),
    [
        pytest.param(None, None, id="no-owner-references"),
        pytest.param([], None, id="empty-owner-references"),
        pytest.param(
            [owner("ReplicaSet", "web-5d4f")], OwnerRef("ReplicaSet", "web-5d4f", NS), id="controller-owner"
        ),
        pytest.param([owner("ReplicaSet", "rs", controller=False)], None, id="controller-false-ignored"),
        pytest.param([owner("ReplicaSet", "rs", controller=None)], None, id="controller-unset-ignored"),
        pytest.param(
            [
                owner("ConfigMap", "cfg", api_version="v1", controller=None),
                owner("Job", "j", api_version="batch/v1"),
            ],
            OwnerRef("Job", "j", NS),
            id="first-controller-after-non-controllers",
        ),
        pytest.param(
            [owner("Deployment", "a"), owner("Deployment", "b")],
            OwnerRef("Deployment", "a", NS),
            id="first-controller-wins",
        ),
        pytest.param(
            [owner("Node", "node-a", api_version="v1")],
            OwnerRef("Node", "node-a", ""),
            id="cluster-scoped-owner",
        ),
        pytest.param([{"controller": True, "kind": "ReplicaSet"}], None, id="reference-without-name-ignored"),
    ],
)
def test_controller_owner(owners: list[dict[str, Any]] | None, expected: OwnerRef | None) -> None:
    assert controller_owner(obj("Pod", "p", NS, owners=owners)) == expected


def chain_reader(*objects: tuple[kube.Resource, dict[str, Any]]) -> FakeReader:
    reader = FakeReader()
    for resource, raw in objects:
        reader.add(resource, raw)
    return reader


async def test_pod_replica_set_deployment() -> None:
    reader = chain_reader(
        (kube.REPLICASETS, obj("ReplicaSet", "web-5d4f", NS, owners=[owner("Deployment", "web")])),
        (kube.DEPLOYMENTS, obj("Deployment", "web", NS)),
    )
    pod = obj("Pod", "web-5d4f-x", NS, owners=[owner("ReplicaSet", "web-5d4f")])

    chain = await read_owner_chain(reader, pod)

    assert chain == (OwnerRef("ReplicaSet", "web-5d4f", NS), OwnerRef("Deployment", "web", NS))
    assert [entry[1] for entry in reader.log] == ["replicasets", "deployments"]
    assert [o.to_raw() for o in chain] == [
        {"namespace": NS, "kind": "ReplicaSet", "name": "web-5d4f"},
        {"namespace": NS, "kind": "Deployment", "name": "web"},
    ]


async def test_pod_job_cron_job() -> None:
    reader = chain_reader(
        (
            kube.JOBS,
            obj("Job", "nightly-29", NS, owners=[owner("CronJob", "nightly", api_version="batch/v1")]),
        ),
        (kube.CRONJOBS, obj("CronJob", "nightly", NS)),
    )
    pod = obj("Pod", "nightly-29-x", NS, owners=[owner("Job", "nightly-29", api_version="batch/v1")])

    assert await read_owner_chain(reader, pod) == (
        OwnerRef("Job", "nightly-29", NS),
        OwnerRef("CronJob", "nightly", NS),
    )


@pytest.mark.parametrize(
    ("kind", "resource"),
    [
        pytest.param("StatefulSet", kube.STATEFULSETS, id="statefulset"),
        pytest.param("DaemonSet", kube.DAEMONSETS, id="daemonset"),
    ],
)
async def test_pod_of_other_apps_workloads(kind: str, resource: kube.Resource) -> None:
    reader = chain_reader((resource, obj(kind, "w", NS)))
    assert await read_owner_chain(reader, obj("Pod", "w-0", NS, owners=[owner(kind, "w")])) == (
        OwnerRef(kind, "w", NS),
    )


async def test_no_owner_reads_nothing() -> None:
    reader = FakeReader()
    assert await read_owner_chain(reader, obj("Pod", "lonely", NS)) == ()
    assert reader.log == []


async def test_cycle_ends_the_chain() -> None:
    reader = chain_reader(
        (kube.REPLICASETS, obj("ReplicaSet", "a", NS, owners=[owner("Deployment", "b")])),
        (kube.DEPLOYMENTS, obj("Deployment", "b", NS, owners=[owner("ReplicaSet", "a")])),
    )
    pod = obj("Pod", "p", NS, owners=[owner("ReplicaSet", "a")])
    assert await read_owner_chain(reader, pod) == (
        OwnerRef("ReplicaSet", "a", NS),
        OwnerRef("Deployment", "b", NS),
    )


async def test_self_owner_is_not_an_owner() -> None:
    reader = FakeReader()
    source = obj("ReplicaSet", "a", NS, owners=[owner("ReplicaSet", "a")])
    assert await read_owner_chain(reader, source) == ()


async def test_at_most_five_owners_and_no_read_past_the_fifth() -> None:
    names = [f"rs-{i}" for i in range(8)]
    reader = FakeReader()
    for name, parent in itertools.pairwise(names):
        reader.add(kube.REPLICASETS, obj("ReplicaSet", name, NS, owners=[owner("ReplicaSet", parent)]))
    pod = obj("Pod", "p", NS, owners=[owner("ReplicaSet", names[0])])

    chain = await read_owner_chain(reader, pod)

    assert chain == tuple(OwnerRef("ReplicaSet", name, NS) for name in names[:MAX_OWNERS])
    assert len(reader.log) == MAX_OWNERS - 1


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(kube.Forbidden("no batch RBAC", status=403), id="forbidden"),
        pytest.param(kube.TransientApiError("timed out"), id="timeout"),
        pytest.param(kube.ApiError("HTTP 400", status=400), id="other"),
    ],
)
async def test_read_error_mid_chain_keeps_what_was_found(error: kube.ApiError) -> None:
    reader = chain_reader(
        (
            kube.JOBS,
            obj("Job", "nightly-29", NS, owners=[owner("CronJob", "nightly", api_version="batch/v1")]),
        ),
    )
    reader.fail_get(kube.JOBS, "nightly-29", error, namespace=NS)
    pod = obj("Pod", "nightly-29-x", NS, owners=[owner("Job", "nightly-29", api_version="batch/v1")])

    assert await read_owner_chain(reader, pod) == (OwnerRef("Job", "nightly-29", NS),)


async def test_owner_gone_ends_the_chain() -> None:
    pod = obj("Pod", "p", NS, owners=[owner("ReplicaSet", "gone")])
    assert await read_owner_chain(FakeReader(), pod) == (OwnerRef("ReplicaSet", "gone", NS),)


@pytest.mark.parametrize(
    "reference",
    [
        pytest.param(owner("Rollout", "r", api_version="argoproj.io/v1alpha1"), id="unknown-kind"),
        pytest.param(owner("Deployment", "d", api_version="example.com/v1"), id="same-kind-other-group"),
    ],
)
async def test_owner_of_a_kind_we_do_not_read_is_last(reference: dict[str, Any]) -> None:
    reader = FakeReader()
    chain = await read_owner_chain(reader, obj("Pod", "p", NS, owners=[reference]))
    assert chain == (OwnerRef(reference["kind"], reference["name"], NS),)
    assert reader.log == []


async def test_static_pod_owned_by_its_node() -> None:
    reader = chain_reader((kube.NODES, obj("Node", "node-a")))
    pod = obj("Pod", "etcd-node-a", "kube-system", owners=[owner("Node", "node-a", api_version="v1")])
    assert await read_owner_chain(reader, pod) == (OwnerRef("Node", "node-a", ""),)
    assert reader.log == [("get", "nodes", "", "node-a")]
