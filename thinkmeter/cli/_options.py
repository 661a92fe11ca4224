"""Option types that check their range at parse time: a bad value is argparse's one-line error (exit 2)
naming the accepted range, never a query that fails or runs on nonsense."""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_WINDOW_S = 3650 * 86400  # ten years


def _show(value: float) -> str:
    return f"{value:g}"


def number(low: float, high: float, *, above_low: bool = False, below_high: bool = False, unit: str = "") -> Callable[[str], float]:
    """A finite float in [low, high]; `above_low` / `below_high` leave that end out."""
    accepted = (
        f"{'greater than' if above_low else 'at least'} {_show(low)}{unit} and "
        f"{'less than' if below_high else 'at most'} {_show(high)}{unit}"
    )

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number; use one {accepted}") from None
        low_ok = value > low if above_low else value >= low
        high_ok = value < high if below_high else value <= high
        if not (math.isfinite(value) and low_ok and high_ok):
            raise argparse.ArgumentTypeError(f"{text} is out of range; use a number {accepted}")
        return value

    return parse


def integer(low: int, high: int) -> Callable[[str], int]:
    """A whole number from low to high."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number; use one from {low} to {high}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is out of range; use a whole number from {low} to {high}")
        return value

    return parse


def window(text: str) -> int:
    """'90m', '24h', '7d' -> seconds, from 1 s to ten years."""
    match = _DURATION.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"window {text!r} is not like 30m, 24h or 7d")
    seconds = int(float(match.group(1)) * _SECONDS[match.group(2)])
    if not 1 <= seconds <= MAX_WINDOW_S:
        raise argparse.ArgumentTypeError(f"window {text!r} is out of range; use from 1s to {MAX_WINDOW_S // 86400}d")
    return seconds


# Shared ranges
INTERVAL_S = number(0, 86400, above_low=True, unit=" s")
PORT = integer(1, 65535)
