"""Rego evaluation behind one small interface, with two engines: an OPA server and regorus in-process.

The classifiers only need a few operations: load a module, evaluate one rule
with an input, close; the hot reload also asks which modules an engine lost.
`PolicyEngine` is that contract; the rest of the controller never sees OPA's
HTTP API or regorus' threading rules. One module per job:

- `protocol`: the contract, its errors, and the input encoding both engines share.
- `opa_server`: `OpaServerEngine`, one OPA server per controller (a sidecar,
  or one per test worker), over OPA's HTTP API. It is the reference: OPA
  type-checks a module at upload and refuses it, with file:line, before it
  replaces the loaded one.
- `embedded`: `EmbeddedEngine`, regorus in this process, on one dedicated
  thread, because a regorus engine panics when touched from another thread.
- `rego_check`: the static checks regorus skips at load (unsafe variables,
  unknown functions, arity), so that `EmbeddedEngine` refuses what OPA refuses.

Both engines send the input as the same JSON text, evaluate with strict
builtin errors (a builtin given a wrong type is an error, not undefined), and
report an undefined rule as `None`. The rest of the controller imports the
names below from this package, not from its modules.

Boundary: this package knows Rego engines, not SignalProcessing. Which
packages exist and what their results mean is in `policies` and `classify`.
"""

from controller.policy_engine.embedded import EmbeddedEngine
from controller.policy_engine.opa_server import OpaServerEngine
from controller.policy_engine.protocol import (
    EVALUATION_TIME_LIMIT,
    PolicyEngine,
    PolicyEngineUnavailable,
    PolicyError,
    PolicyEvaluationError,
    PolicyRejected,
    PolicyTimeLimitExceeded,
)
from controller.policy_engine.rego_check import BUILTIN_ARITY

__all__ = [
    "BUILTIN_ARITY",
    "EVALUATION_TIME_LIMIT",
    "EmbeddedEngine",
    "OpaServerEngine",
    "PolicyEngine",
    "PolicyEngineUnavailable",
    "PolicyError",
    "PolicyEvaluationError",
    "PolicyRejected",
    "PolicyTimeLimitExceeded",
]
