"""The paper's claims, each computed from per-seed numbers, never written by hand (``results/claims.json``).

A claim is a quantity measured once per training seed and a rule on those numbers:

- ``positive``: the mean is more than two standard errors above zero (a difference that is not seed noise);
- ``below``: the mean plus two standard errors is below ``threshold`` (a ratio that is clearly small);
- ``at_least``: the mean minus two standard errors is at least ``threshold``.

The standard error is the sample standard deviation over seeds divided by the square root of their number,
so a claim needs at least two seeds to hold at all. ``holds`` is what the rule says about the numbers it is
given; :func:`judge` is the only place that decides it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

Rule = Literal["positive", "below", "at_least"]
SeedNumbers = Mapping[str, Any]  # everything measured for one seed (see workflows.reproduce.evaluate_seed)


@dataclass(frozen=True)
class Claim:
    """One claim: its name, what it says, the per-seed quantity and the rule that decides it."""

    name: str
    says: str
    quantity: Callable[[SeedNumbers], float | None]
    rule: Rule = "positive"
    threshold: float = 0.0
    unit: str = "mIoU points"


def judge(values: Sequence[float | None], rule: Rule, threshold: float = 0.0) -> dict[str, Any]:
    """Mean, sample standard deviation, standard error and the verdict of ``rule`` on per-seed ``values``."""
    vals = [float(v) for v in values if v is not None and not math.isnan(v)]
    n = len(vals)
    mean = float(np.mean(vals)) if vals else None
    std = float(np.std(vals, ddof=1)) if n > 1 else None
    se = std / math.sqrt(n) if std is not None else None
    if mean is None or se is None:
        holds, reason = False, f"{n} seed(s) with a value: a claim needs at least 2 for a standard error"
    elif rule == "positive":
        holds, reason = mean > 2 * se, f"mean {mean:.4g} vs 2 x standard error {2 * se:.4g}"
    elif rule == "below":
        holds, reason = mean + 2 * se < threshold, f"mean + 2 SE = {mean + 2 * se:.4g} vs {threshold:g}"
    elif rule == "at_least":
        holds, reason = mean - 2 * se >= threshold, f"mean - 2 SE = {mean - 2 * se:.4g} vs {threshold:g}"
    else:
        raise ValueError(f"unknown rule {rule!r}")
    return {"n": n, "mean": mean, "std": std, "se": se, "holds": bool(holds), "why": reason}


def evaluate_claims(claims: Sequence[Claim], per_seed: Mapping[str, SeedNumbers]) -> list[dict[str, Any]]:
    """``[{"claim", "says", "rule", "threshold", "measured": {seed: value}, "mean", "std", "holds", ...}]``."""
    out = []
    for claim in claims:
        measured = {seed: _clean(claim.quantity(numbers)) for seed, numbers in per_seed.items()}
        verdict = judge(list(measured.values()), claim.rule, claim.threshold)
        out.append(
            {
                "claim": claim.name,
                "says": claim.says,
                "rule": claim.rule,
                "threshold": claim.threshold,
                "unit": claim.unit,
                "measured": measured,
                **verdict,
            }
        )
    return out


def _clean(value: float | None) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def markdown(claims: Sequence[Mapping[str, Any]]) -> str:
    """A table of the claims: per-seed numbers, mean ± std, and whether each holds."""
    lines = [
        "| claim | what it says | per seed | mean ± std | holds |",
        "| --- | --- | --- | ---: | :---: |",
    ]
    for c in claims:
        scale = 100.0 if c["unit"] in ("mIoU points", "IoU points") else 1.0
        digits = 1 if scale == 100.0 else 3
        seeds = ", ".join("n/a" if v is None else f"{scale * v:.{digits}f}" for v in c["measured"].values())
        stat = "n/a" if c["mean"] is None else f"{scale * c['mean']:.{digits}f}"
        if c["std"] is not None:
            stat += f" ± {scale * c['std']:.{digits}f}"
        lines.append(f"| `{c['claim']}` | {c['says']} | {seeds} | {stat} | {'yes' if c['holds'] else '**no**'} |")
    return "\n".join(lines) + "\n"
