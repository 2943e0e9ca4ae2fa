"""Recovery context: what earlier remediation attempts of the parent RemediationRequest left (BR-SP-003).

When the orchestrator retries a remediation, the RemediationRequest's status counts the attempts
and keeps the last failure; the next stages want that next to the signal. ``recovery_context``
builds ``status.recoveryContext`` from the RR (pure); ``read_recovery_context`` fetches the RR.

Fixed on purpose, compared with the original (reference 2.11):

* the RR is read as plain JSON from ``kubernaut.ai/v1alpha1``, so the feature works at all (the
  original's typed read always failed for lack of a registered scheme);
* a missing or unreadable ``startTime`` leaves ``timeSinceFirstFailure`` out instead of measuring
  from year 1, and a ``startTime`` in the future (clock skew) gives ``0s``;
* the duration is whole seconds in Go's notation (``1h2m3s``), readable by ``time.ParseDuration``;
* an RR that is missing gives no recovery context; any other read error is retried
  (``kube.TransientApiError``) rather than silently dropping the context.

``timeSinceFirstFailure`` is measured from the RR's ``startTime``: the RR keeps no time of its
first failure, and its first attempt began then.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TypedDict, cast

from controller import kube
from controller.signalprocessing import RecoveryContext, RemediationRequestRef, optional_time


class RawRemediationRequestStatus(TypedDict, total=False):
    recoveryAttempts: int
    failureReason: str
    startTime: str


class RawRemediationRequest(TypedDict, total=False):
    metadata: kube.RawMeta
    status: RawRemediationRequestStatus


def recovery_context(rr: RawRemediationRequest, *, now: datetime) -> RecoveryContext | None:
    """The recovery context of a RemediationRequest, or None when it has no recovery attempts.

    `now` must be timezone-aware.
    """
    status = rr.get("status") or {}
    attempts = status.get("recoveryAttempts")
    if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts <= 0:
        return None
    started = optional_time(status.get("startTime"))
    reason = status.get("failureReason")
    return RecoveryContext(
        previous_remediation_id=(rr.get("metadata") or {}).get("name", ""),
        attempt_count=attempts,
        last_failure_reason=reason if isinstance(reason, str) else "",
        time_since_first_failure=max(now - started, timedelta(0)) if started is not None else None,
    )


async def read_recovery_context(
    reader: kube.Reader, ref: RemediationRequestRef, *, sp_namespace: str, now: datetime
) -> RecoveryContext | None:
    """Reads the parent RR; None when it is missing or has no recovery attempts.

    Raises `kube.TransientApiError` for any other read error.
    """
    if not ref.name:
        return None
    try:
        raw = await reader.get(kube.REMEDIATIONREQUESTS, ref.name, namespace=ref.namespace_or(sp_namespace))
    except kube.TransientApiError:
        raise
    except kube.ApiError as e:
        raise kube.TransientApiError(
            f"reading RemediationRequest {ref.namespace_or(sp_namespace)}/{ref.name}: {e}",
            status=e.status,
            reason=e.reason,
        ) from e
    if raw is None:
        return None
    return recovery_context(cast(RawRemediationRequest, raw), now=now)
