"""Small numeric helpers shared by the benchmark modules."""

from __future__ import annotations

from collections.abc import Sequence


def pct(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..1) of a non-empty sequence."""
    s = sorted(values)
    pos = (len(s) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def pcts(values: Sequence[float], *qs: float, digits: int = 3) -> dict[str, float | None]:
    return {f"p{round(q * 100)}": (round(pct(values, q), digits) if values else None) for q in qs}
