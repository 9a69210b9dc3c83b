"""Ranking signals of a labelled batch, computed where the logits are: what ``review export`` ranks images by.

Two signals need the network and so must be measured at labelling time; each is one float per image:

* ``scale_disagreement``: the fraction of pixels whose argmax differs between the smallest and the largest
  inference scale's own prediction (both resized to the input's resolution). Where scales disagree, the
  attention had to pick one, and the fused label is a guess more often than its confidence shows.
* ``flip_disagreement`` (with flip): the fraction of pixels whose argmax differs between the image and its
  mirror image.

The other signals ``review`` uses (mean confidence, ignored-pixel share, rare-class share) follow from the
manifest's ``mean_confidence``, ``ignore_count`` and ``class_counts``, so they need no column of their own.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from autolabel.models.mscale import scale_key
from autolabel.models.predict import FLIP_KEY, Outputs

SCALE_DISAGREEMENT = "scale_disagreement"
FLIP_DISAGREEMENT = "flip_disagreement"


def scale_pair(scales: Sequence[float]) -> tuple[str, str] | None:
    """Output keys of the smallest and the largest scale's prediction; None with a single scale."""
    ordered = sorted(float(s) for s in scales)
    if len(ordered) < 2:
        return None
    return scale_key("pred", ordered[0]), scale_key("pred", ordered[-1])


def signal_keys(scales: Sequence[float], flip: bool) -> tuple[set[str], set[str]]:
    """(keys to request from ``predict_logits``, those of them wanted at the input's resolution)."""
    pair = scale_pair(scales)
    resized = set(pair) if pair is not None else set()
    return resized | ({FLIP_KEY} if flip else set()), resized


def disagreement(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B,) float32: the fraction of pixels where two (B, C, H, W) logit maps have different argmaxes."""
    return (a.argmax(dim=1) != b.argmax(dim=1)).float().mean(dim=(1, 2))


def ranking_signals(outputs: Outputs, scales: Sequence[float], flip: bool) -> dict[str, torch.Tensor]:
    """Signal name -> (B,) float32 on the outputs' device, for the signals these settings can measure."""
    signals: dict[str, torch.Tensor] = {}
    pair = scale_pair(scales)
    if pair is not None:
        signals[SCALE_DISAGREEMENT] = disagreement(outputs[pair[0]], outputs[pair[1]])
    if flip:
        flipped = outputs[FLIP_KEY]
        # "pred" is the mean of both passes, so the unflipped pass's logits are 2 * pred - flipped
        signals[FLIP_DISAGREEMENT] = disagreement(2 * outputs["pred"] - flipped, flipped)
    return signals
