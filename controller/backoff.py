"""When to retry an SP after a transient failure: exponential, capped, jittered.

Kept apart from the pipeline because it is a policy of its own, set from the configuration and
tested on its own: how long the n-th consecutive failure waits.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Final

# Past this many doublings every delay is the cap anyway; a larger exponent would overflow a float.
_MAX_DOUBLINGS: Final = 64


@dataclass(frozen=True)
class RetryBackoff:
    """When to retry an SP after its n-th transient failure: base * 2^(n-1), capped, ±10 % jitter.

    The jitter spreads each delay evenly around its nominal value, so SPs that failed together
    do not all retry together, at the cap too, and the cap is a hard ceiling: the first retry
    comes 0.9 to 1.1 times `base` after the failure, and no retry ever waits longer than `cap`.
    """

    base: float = 30.0
    cap: float = 300.0
    jitter: float = 0.1

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        nominal = min(self.cap, self.base * 2.0 ** min(max(0, failures - 1), _MAX_DOUBLINGS))
        spread = (rng or random).uniform(-self.jitter, self.jitter)
        return min(self.cap, max(0.0, nominal * (1 + spread)))
