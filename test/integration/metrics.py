"""One scrape of a Prometheus `/metrics` page, read so that a missing series is never taken for 0.

A spec that waits for "`audit_events_pending` is 0" would pass at once if the
metric were renamed, and one that expects a counter to stay at 0 would pass
with a misspelt label, if an absent series read as 0. `Scrape.value` therefore
fails with `MetricSeriesError` unless the name and labels pick exactly one
series, and the error lists the label sets the metric does have.

One absence is legitimate: a labelled counter (or histogram) child that was
never incremented is not exposed at all, although its value is 0. A spec that
expects that says so by calling `Scrape.counter`, which still fails for a
metric the page does not declare and for label names its series do not have.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

# The sample names a counter, histogram or summary family exposes, after the family's name.
_COUNTED_SAMPLES = {
    "counter": ("_total",),
    "histogram": ("_count", "_sum", "_bucket"),
    "summary": ("_count", "_sum"),
}


class MetricSeriesError(AssertionError):
    """The name and labels a spec asked for do not pick exactly one series of the scraped metrics."""


def show(name: str, labels: Mapping[str, str]) -> str:
    """`name{key="value",...}`, as the exposition writes a series."""
    return name + "{" + ",".join(f'{key}="{value}"' for key, value in sorted(labels.items())) + "}"


class Scrape:
    """The metrics of one `/metrics` answer."""

    def __init__(self, text: str) -> None:
        self._families: list[Metric] = list(text_string_to_metric_families(text))

    def samples(self, name: str) -> list[Sample]:
        """Every series named `name` (a sample name, such as `foo_total` or `foo_count`)."""
        return [sample for family in self._families for sample in family.samples if sample.name == name]

    def sample(self, name: str, **labels: str) -> Sample:
        """The one series named `name` whose labels include `labels`; `MetricSeriesError` unless one."""
        candidates = self.samples(name)
        matching = [sample for sample in candidates if labels.items() <= sample.labels.items()]
        if len(matching) != 1:
            raise MetricSeriesError(
                f"{len(matching) or 'no'} series match {show(name, labels)}; {_existing(name, candidates)}"
            )
        return matching[0]

    def value(self, name: str, **labels: str) -> float:
        """The value of the one series `name{labels}` (see `sample`)."""
        return float(self.sample(name, **labels).value)

    def counter(self, name: str, **labels: str) -> float:
        """The value of the counter series `name{labels}`, or 0 when that child was never incremented.

        `name` is a counter's `_total` or a histogram's `_count`/`_sum` sample, and `labels` must be
        all of its labels. Fails with `MetricSeriesError` when no such counter is declared, and when the
        family has series whose label names differ from `labels`. A misspelt label *value* cannot be
        told from a child never incremented; where a spec can, it should expect a non-zero value of
        the same family too.
        """
        family = next((family for family in self._families if name in _counted_names(family)), None)
        if family is None:
            declared = sorted(sample for family in self._families for sample in _counted_names(family))
            raise MetricSeriesError(f"no counter {name} is declared; counters declared: {declared}")
        candidates = [sample for sample in family.samples if sample.name == name]
        label_names = {frozenset(sample.labels) for sample in candidates}
        if label_names and frozenset(labels) not in label_names:
            raise MetricSeriesError(
                f"{show(name, labels)} has other label names than its series; {_existing(name, candidates)}"
            )
        matching = [sample for sample in candidates if sample.labels == labels]
        return float(matching[0].value) if matching else 0.0


def _counted_names(family: Metric) -> tuple[str, ...]:
    return tuple(family.name + suffix for suffix in _COUNTED_SAMPLES.get(family.type, ()))


def _existing(name: str, samples: list[Sample]) -> str:
    if not samples:
        return f"there is no series named {name} at all"
    return f"the series of {name} are: " + ", ".join(sorted(show(name, s.labels) for s in samples))
