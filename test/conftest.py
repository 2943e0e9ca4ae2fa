"""Settings for every test of the suite."""

from __future__ import annotations

from hypothesis import settings

# Hypothesis fails an example that takes longer than its deadline (200 ms by default): a stopwatch,
# which a loaded machine or a second suite running beside this one breaks. Examples are judged by
# their results only.
settings.register_profile("suite", deadline=None)
settings.load_profile("suite")
