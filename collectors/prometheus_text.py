"""A small parser for the Prometheus text exposition format (0.0.4, and the OpenMetrics subset engines emit).

Lenient by design: a line that does not parse is counted and skipped, so one odd line from an engine
never hides the rest of its metrics. Label order does not matter (prometheus-client sorts labels).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class Histogram:
    """One histogram series: cumulative bucket counts at `bounds` (the `+Inf` bucket is `count`)."""

    labels: dict[str, str]
    bounds: tuple[float, ...]
    cumulative_counts: tuple[float, ...]
    count: float
    sum: float


@dataclass
class Exposition:
    samples: dict[str, list[Sample]] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)  # family name -> counter, gauge, histogram, ...
    invalid_lines: int = 0

    def __len__(self) -> int:
        return sum(len(series) for series in self.samples.values())

    def series(self, name: str) -> list[Sample]:
        return self.samples.get(name, [])

    def histograms(self, name: str) -> list[Histogram]:
        """Series of histogram `name`, grouped by their labels other than `le`; incomplete ones dropped."""
        buckets: dict[tuple, list[tuple[float, float]]] = defaultdict(list)
        for sample in self.series(name + "_bucket"):
            try:
                bound = float(sample.labels["le"])
            except (KeyError, ValueError):
                continue
            buckets[_key(sample.labels, drop="le")].append((bound, sample.value))
        counts = {_key(s.labels): s.value for s in self.series(name + "_count")}
        sums = {_key(s.labels): s.value for s in self.series(name + "_sum")}
        result = []
        for key, pairs in buckets.items():
            if key not in counts or key not in sums:
                continue
            finite = sorted((b, c) for b, c in pairs if not math.isinf(b))
            result.append(
                Histogram(
                    labels=dict(key),
                    bounds=tuple(b for b, _ in finite),
                    cumulative_counts=tuple(c for _, c in finite),
                    count=counts[key],
                    sum=sums[key],
                )
            )
        return result


def parse(text: str) -> Exposition:
    exposition = Exposition()
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 4 and parts[1] == "TYPE":
                exposition.types[parts[2]] = parts[3].strip()
            continue
        try:
            sample = _parse_sample(line)
        except ValueError:
            exposition.invalid_lines += 1
            continue
        exposition.samples.setdefault(sample.name, []).append(sample)
    return exposition


def _key(labels: dict[str, str], drop: str | None = None) -> tuple:
    return tuple(sorted((k, v) for k, v in labels.items() if k != drop))


def _sample_name(line: str) -> str:
    end = 0
    while end < len(line) and (line[end].isalnum() or line[end] in "_:"):
        end += 1
    if end == 0 or line[0].isdigit():
        raise ValueError("no metric name")
    return line[:end]


def _parse_sample(line: str) -> Sample:
    name = _sample_name(line)
    rest = line[len(name) :]
    labels: dict[str, str] = {}
    stripped = rest.lstrip()
    if stripped.startswith("{"):
        labels, consumed = _parse_labels(stripped)
        rest = stripped[consumed:]
    if not rest[:1].isspace():
        raise ValueError("no value")
    # An OpenMetrics exemplar follows " # "; the value (and optional timestamp) come before it.
    fields = rest.split("#", 1)[0].split()
    if not fields or len(fields) > 2:
        raise ValueError("bad value")
    # float() reads every spelling servers use: NaN, +Inf, -Inf, inf, nan, 1e+06.
    return Sample(name, labels, float(fields[0]))


def _parse_labels(text: str) -> tuple[dict[str, str], int]:
    """Parse `{a="x",b="y"}` at the start of text; return the labels and the characters consumed."""
    labels: dict[str, str] = {}
    i = 1
    n = len(text)
    while True:
        while i < n and text[i] in " \t,":
            i += 1
        if i < n and text[i] == "}":
            return labels, i + 1
        start = i
        while i < n and (text[i].isalnum() or text[i] == "_"):
            i += 1
        label = text[start:i]
        while i < n and text[i] in " \t":
            i += 1
        if not label or label[0].isdigit() or i >= n or text[i] != "=":
            raise ValueError("bad label")
        i += 1
        while i < n and text[i] in " \t":
            i += 1
        if i >= n or text[i] != '"':
            raise ValueError("bad label value")
        i += 1
        value = []
        while True:
            if i >= n:
                raise ValueError("unterminated label value")
            char = text[i]
            if char == "\\" and i + 1 < n:
                escaped = text[i + 1]
                value.append("\n" if escaped == "n" else escaped)
                i += 2
            elif char == '"':
                i += 1
                break
            else:
                value.append(char)
                i += 1
        labels[label] = "".join(value)
