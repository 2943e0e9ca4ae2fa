"""The owner chain of a target: who controls it, who controls that, and so on (BR-SP-100).

Downstream stages want to act on the workload behind a signal (the Deployment of a crashing Pod),
so enrichment records the chain of controlling owners: only ownerReferences with
``controller: true``, owners only (never the target itself), at most five, each as
``{namespace, kind, name}``. The chain is a nice-to-have: any read error, an owner of a kind we do
not read, or a cycle ends it early, and it never fails enrichment.

``controller_owner`` is the pure step; ``read_owner_chain`` walks it through a ``kube.Reader``.
"""

from __future__ import annotations

import logging
from typing import Final, cast

from controller import kube
from controller.signalprocessing import OwnerRef

MAX_OWNERS: Final = 5  # the CRD's ownerChain maxItems

logger = logging.getLogger(__name__)


def _meta(raw: kube.RawObject) -> kube.RawMeta:
    return cast(kube.RawMeta, raw.get("metadata") or {})


def controller_reference(raw: kube.RawObject) -> kube.RawOwnerReference | None:
    """The first ownerReference of `raw` marked `controller: true` that names a kind and an object."""
    for reference in _meta(raw).get("ownerReferences") or []:
        if reference.get("controller") is True and reference.get("kind") and reference.get("name"):
            return reference
    return None


def controller_owner(raw: kube.RawObject) -> OwnerRef | None:
    """The controlling owner of `raw`, in `raw`'s namespace unless the owner's kind is cluster-scoped."""
    reference = controller_reference(raw)
    if reference is None:
        return None
    kind = reference.get("kind", "")
    namespace = "" if kube.is_cluster_scoped(kind) else _meta(raw).get("namespace", "")
    return OwnerRef(kind=kind, name=reference.get("name", ""), namespace=namespace)


def _identity(raw: kube.RawObject) -> OwnerRef:
    meta = _meta(raw)
    return OwnerRef(
        kind=str(raw.get("kind", "")), name=meta.get("name", ""), namespace=meta.get("namespace", "")
    )


async def read_owner_chain(
    reader: kube.Reader, source: kube.RawObject, *, max_owners: int = MAX_OWNERS
) -> tuple[OwnerRef, ...]:
    """The controlling owners above `source` (an object already read), nearest first.

    Each owner is added before it is read, so an owner that cannot be read (unknown kind, gone,
    forbidden, timeout) is still the last entry. An owner seen before, the source included, ends
    the chain without being added again.
    """
    chain: list[OwnerRef] = []
    seen = {_identity(source)}
    current = source
    while len(chain) < max_owners:
        reference = controller_reference(current)
        owner = controller_owner(current)
        if reference is None or owner is None or owner in seen:
            break
        chain.append(owner)
        seen.add(owner)
        if len(chain) == max_owners:
            break  # its own owner could not be recorded anyway
        resource = kube.resource_for_kind(owner.kind, reference.get("apiVersion"))
        if resource is None or resource.namespaced != bool(owner.namespace):
            logger.debug("Owner chain ends at %s %s: not a kind we read", owner.kind, owner.name)
            break
        try:
            found = await reader.get(resource, owner.name, namespace=owner.namespace or None)
        except kube.ApiError as e:
            logger.info("Owner chain ends at %s %s/%s: %s", owner.kind, owner.namespace, owner.name, e)
            break
        if found is None:
            break
        current = found
    return tuple(chain)
