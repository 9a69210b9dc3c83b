"""The network's geometry against the synthetic city's: receptive field per scale, and what the city puts
inside and outside it (docs/synthetic_city.md).

- :func:`receptive_field`: the *effective* receptive field of a model run at each scale, measured as in Luo et
  al. 2016: the gradient of the centre pixel's decision (the log-probability of the class it predicts there)
  with respect to the input image, in pixels of the 1.0x image; its radius is the smallest Chebyshev radius
  around the centre that holds a given share (50 %, 90 %) of the gradient's magnitude.
- :func:`city_vs_network`: the city's measured thin-structure widths against the logit stride at each scale,
  and its distances from bare ground to the nearest cue against those radii.

``python -m autolabel.workflows.geometry [--checkpoint last.pt]`` prints both (an untrained tiny HRNet-OCR
without a checkpoint).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from autolabel.config import ModelConfig
from autolabel.models import build_model
from autolabel.models.checkpoint import load_checkpoint
from autolabel.models.predict import normalise
from autolabel.synth import v2
from autolabel.synth.measure import (
    LOGIT_STRIDE_AT,
    distance_histogram,
    distance_summary,
    render_sample,
    share_within,
    total_histogram,
    width_summary,
)

SCALES = (0.5, 1.0, 2.0)
SHARES = (0.5, 0.9)  # of the gradient magnitude inside the radius
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _radius(grad: np.ndarray, shares: Sequence[float]) -> dict[str, int]:
    """Smallest Chebyshev radius around the centre holding each share of ``grad`` (H, W) >= 0."""
    h, w = grad.shape
    yy, xx = np.mgrid[:h, :w]
    r = np.maximum(np.abs(yy - h // 2), np.abs(xx - w // 2)).ravel()
    per_radius = np.bincount(r, weights=grad.ravel())  # gradient mass at each radius
    cumulative = np.cumsum(per_radius) / max(per_radius.sum(), 1e-30)
    return {f"{int(100 * q)}%": int(np.searchsorted(cumulative, q)) for q in shares}


def receptive_field(
    model: nn.Module,
    images: torch.Tensor,
    scales: Sequence[float] = SCALES,
    shares: Sequence[float] = SHARES,
) -> dict[str, dict[str, int]]:
    """Effective receptive field radius (pixels of the 1.0x image) of ``model`` run at each scale alone.

    ``images``: normalised (B, 3, H, W). The model runs in eval mode one scale at a time (``model(x,
    scales=[s])``), exactly as single-scale inference does; the gradients of every image are summed.
    """
    model.eval()
    h, w = images.shape[-2:]
    out = {}
    for scale in scales:
        grad = np.zeros((h, w))
        for image in images:
            x = image[None].clone().requires_grad_(True)
            logits = model(x, scales=[scale])["pred"][0, :, h // 2, w // 2]  # (C,) at the centre pixel
            decision = torch.log_softmax(logits, dim=0).max()
            (g,) = torch.autograd.grad(decision, x)
            grad += g[0].abs().sum(0).numpy()
        out[f"{scale:g}x"] = _radius(grad, shares)
    return out


def tiny_model(seed: int = 0) -> nn.Module:
    """An untrained tiny HRNet-OCR with its BatchNorm statistics left at their initial values."""
    torch.manual_seed(seed)
    cfg = ModelConfig(arch="hrnet_ocr", width="tiny", mscale="single", train_scales=(1.0,), infer_scales=(1.0,))
    return build_model(cfg)


def city_images(count: int, size: tuple[int, int], seed: int = 0, split: str = "val") -> torch.Tensor:
    """The first ``count`` images of a version-2 city's ``split``, normalised (B, 3, H, W)."""
    scenes = render_sample(count, size, seed=seed, split=split)
    return normalise(torch.from_numpy(np.stack([s.rgb for s in scenes])), MEAN, STD)


def context_shares(hists: dict[str, np.ndarray], radii: dict[str, dict[str, int]]) -> dict[str, dict[str, Any]]:
    """For each radius definition (share of the gradient): the share of bare ground whose nearest cue lies
    beyond the receptive field at 2.0x but within it at 0.5x, beyond it at 1.0x too, and within it at 2.0x."""
    everything = total_histogram(hists)
    out = {}
    for share in radii["2x"]:
        r2, r1, r05 = radii["2x"][share], radii["1x"][share], radii["0.5x"][share]
        out[share] = {
            "radius_px": {"2x": r2, "1x": r1, "0.5x": r05},
            "beyond_2x_within_0.5x": share_within(everything, r2, r05),
            "beyond_1x_within_0.5x": share_within(everything, r1, r05),
            "within_2x": share_within(everything, -1, r2),
            "per_class_beyond_2x_within_0.5x": {n: share_within(h, r2, r05) for n, h in hists.items()},
        }
    return out


def city_vs_network(
    radii: Mapping[str, dict[str, dict[str, int]]],
    *,
    scenes: int = 30,
    size: tuple[int, int] = v2.DESIGN_SIZE,
    seed: int = 0,
) -> dict[str, Any]:
    """Thin widths vs the logit stride per scale, and :func:`context_shares` for each named set of receptive
    field radii (e.g. one per training seed), over the first ``scenes`` train scenes of a version-2 city."""
    sample = render_sample(scenes, size, seed=seed)
    hists = distance_histogram(sample)
    return {
        "scenes": scenes,
        "size": list(size),
        "logit_stride_px": {f"{s:g}x": v for s, v in LOGIT_STRIDE_AT.items()},
        "thin_widths": width_summary(sample),
        "context_distance": distance_summary(hists),
        "receptive_field_px": dict(radii),
        "context_vs_receptive_field": {name: context_shares(hists, r) for name, r in radii.items()},
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=None, help="a trained model (default: untrained tiny)")
    parser.add_argument("--images", type=int, default=4, help="val images whose centre gradients are summed")
    parser.add_argument("--scenes", type=int, default=30, help="scenes measured for widths and distances")
    args = parser.parse_args(argv)
    model = tiny_model() if args.checkpoint is None else load_checkpoint(args.checkpoint).model
    radii = receptive_field(model, city_images(args.images, v2.DESIGN_SIZE))
    name = "untrained" if args.checkpoint is None else str(args.checkpoint)
    print(json.dumps(city_vs_network({name: radii}, scenes=args.scenes), indent=2))


if __name__ == "__main__":
    main()
