"""Reading a registry's exposition back with prometheus-client's own parser."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from bot.observability.metrics import BotMetrics


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample in a text exposition, keyed by (sample name, sorted labels)."""
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(metrics: BotMetrics | str, name: str, **labels: str) -> float | None:
    text = metrics if isinstance(metrics, str) else metrics.exposition()
    return samples(text).get((name, tuple(sorted(labels.items()))))
