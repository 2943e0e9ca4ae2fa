"""How the specs talk to an OPA server of their own."""

from __future__ import annotations

from typing import Final

# On top of a rule's time limit, how long a spec's engine waits for OPA's answer. A second suite
# beside this one can starve OPA for over a second; a spec that is not about the time limit waits
# for the answer instead of taking slowness for an unreachable OPA.
PATIENT_TRANSPORT_ALLOWANCE: Final = 60.0
