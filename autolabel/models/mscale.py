"""Multi-scale inference and training: hierarchical attention (Tao et al. 2020) and the baselines.

The fusion rules are small pure functions (:func:`hierarchical_fuse`, :func:`average_fuse`,
:func:`explicit_fuse`) so tests can call them directly. :class:`MultiScaleSegmenter` is the base class of
every network in :mod:`autolabel.models`: a subclass only says how one scale is segmented (:meth:`segment`),
the base class runs the scales and fuses them according to ``mscale``:

- ``hierarchical``: chained attention from the largest scale down; training uses ``train_scales`` (a pair).
- ``avgpool``: the mean of the per-scale logits.
- ``explicit``: Chen et al. 2016 -- one attention score per scale, softmax across scales, trained on all
  of its scales at once.
- ``single``: one scale (several scales at inference are averaged, the usual baseline).

Outputs are dicts: ``pred`` (fused logits at input resolution), ``aux`` (fused auxiliary logits, when the
head has them; in eval mode only on request), and per scale ``pred_{s}x`` / ``aux_{s}x`` / ``attn_{s}x`` at
that scale's own resolution (``explicit``: ``attn_{s}x`` are the softmax weights, at input resolution).
Hierarchical fusion has no ``attn`` for its largest scale: that attention is never used. In eval mode it is
not computed; in train mode it is, and thrown away, as the published training does: the head's BatchNorm
statistics then average the features of every training scale (0.5x and 1.0x), the scales 3-scale inference
applies it to, not the smaller scale's alone. Outputs, loss and gradients are the same either way.
"""

from __future__ import annotations

import abc
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MscaleMode = Literal["hierarchical", "avgpool", "explicit", "single"]
ATTENTION_MODES = ("hierarchical", "explicit")
Attention = Literal["none", "sigmoid", "score"]  # what _run_scale does with the attention head


def scale_key(prefix: str, scale: float) -> str:
    """Output key of one scale: ``scale_key("pred", 0.5) == "pred_0.5x"``, 1.0 -> ``pred_1.0x``."""
    return f"{prefix}_{float(scale)}x"


def resize_to(x: Tensor, size: Sequence[int]) -> Tensor:
    """Bilinear resize (align_corners=False) to ``size`` = (H, W); returns ``x`` itself when already there."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def rescale(images: Tensor, scale: float) -> Tensor:
    """Resize an input batch by ``scale`` the way the published code does (size = floor(H * scale))."""
    if scale == 1.0:
        return images
    return F.interpolate(images, scale_factor=scale, mode="bilinear", align_corners=False, recompute_scale_factor=True)


def hierarchical_fuse(preds: Mapping[float, Tensor], attns: Mapping[float, Tensor]) -> Tensor:
    """Chain per-scale logits from the largest scale down (docs/method.md).

    ``preds[s]`` and ``attns[s]`` (sigmoid attention, 1 channel) are at scale ``s``'s own resolution. The
    largest scale seeds the result; then for each smaller scale ``s``:
    ``s >= 1``: ``pred = a_s * p_s + (1 - a_s) * down(pred)``;
    ``s < 1``: ``pred = up(a_s * p_s) + (1 - up(a_s)) * pred``.
    The result has the resolution of the smallest scale >= 1 (the input's, when 1.0 is in the list).
    """
    order = sorted(preds, reverse=True)
    fused = preds[order[0]]
    # lerp / in-place addcmul: at most one new full-size tensor per step instead of four (several times
    # faster on CPU, where every large temporary costs fresh pages)
    for s in order[1:]:
        p, a = preds[s], attns[s]
        if s >= 1.0:
            down = resize_to(fused, p.shape[-2:])
            p, a = p.to(down.dtype), a.to(down.dtype)  # lerp wants one dtype; autocast may mix them
            # a * p + (1 - a) * down(fused); in place only on a tensor made here, never on a caller's
            fused = down.lerp_(p, a) if down is not fused else torch.lerp(down, p, a)
        else:
            size = fused.shape[-2:]
            fused = resize_to(a * p, size).addcmul_(fused, 1 - resize_to(a, size))
    return fused


def average_fuse(preds: Sequence[Tensor], size: Sequence[int]) -> Tensor:
    """Mean of per-scale logits, each resized to ``size``."""
    if len(preds) == 1:
        return resize_to(preds[0], size)
    return torch.stack([resize_to(p, size) for p in preds]).mean(dim=0)


def explicit_fuse(preds: Sequence[Tensor], scores: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """Softmax across scales of the per-scale attention scores; returns (fused logits, weights (B, S, H, W)).

    All inputs must already share one resolution (the input's).
    """
    weights = torch.softmax(torch.cat(list(scores), dim=1), dim=1)  # (B, S, H, W)
    fused = sum(weights[:, i : i + 1] * p for i, p in enumerate(preds))
    assert isinstance(fused, Tensor), "explicit_fuse needs at least one prediction"  # sum() of nothing is 0
    return fused, weights


class ScaleAttentionHead(nn.Sequential):
    """conv3x3-BN-ReLU (x2 with ``inner_3x3``) -> conv1x1 to one channel: the raw per-pixel attention score.

    The sigmoid (hierarchical) or the softmax across scales (explicit) is applied by the caller.
    """

    def __init__(self, *, in_channels: int, mid_channels: int, inner_3x3: bool = True):
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            conv0=nn.Conv2d(in_channels, mid_channels, 3, padding=1, bias=False),
            bn0=nn.BatchNorm2d(mid_channels),
            re0=nn.ReLU(inplace=True),
        )
        if inner_3x3:
            layers.update(
                conv1=nn.Conv2d(mid_channels, mid_channels, 3, padding=1, bias=False),
                bn1=nn.BatchNorm2d(mid_channels),
                re1=nn.ReLU(inplace=True),
            )
        layers["conv2"] = nn.Conv2d(mid_channels, 1, 1, bias=False)
        super().__init__(layers)


class SegmentOutput(NamedTuple):
    """What a network computes for one (already resized) input, at its own feature stride."""

    logits: Tensor  # (B, C, h, w)
    aux: Tensor | None  # (B, C, h, w) auxiliary logits, or None when the head has none
    feats: Tensor  # (B, F, h, w) input of the scale-attention head


class MultiScaleSegmenter(nn.Module, abc.ABC):
    """Base class: runs :meth:`segment` at several scales and fuses the results by ``mscale``.

    Subclasses build their trunk and head, then ``self.scale_attn`` (a :class:`ScaleAttentionHead`, or None
    when ``mscale`` needs no attention), and implement :meth:`segment`.
    """

    scale_attn: nn.Module | None

    def __init__(
        self, *, num_classes: int, mscale: MscaleMode, train_scales: Sequence[float], infer_scales: Sequence[float]
    ):
        super().__init__()
        self.num_classes = num_classes
        self.mscale = mscale
        self.train_scales = tuple(float(s) for s in train_scales)
        self.infer_scales = tuple(float(s) for s in infer_scales)

    @property
    def uses_attention(self) -> bool:
        return self.mscale in ATTENTION_MODES

    @abc.abstractmethod
    def segment(self, x: Tensor) -> SegmentOutput:
        """Logits (and aux logits, attention features) of one input at the network's output stride."""

    def forward(
        self, images: Tensor, scales: Sequence[float] | None = None, *, with_aux: bool | None = None
    ) -> dict[str, Tensor]:
        """Fused logits for normalised images (B, 3, H, W).

        Train mode always uses ``train_scales``; eval mode ``scales`` or else ``infer_scales``. Aux logits
        (``aux``, ``aux_{s}x``) are a training signal: returned in train mode, in eval mode only with
        ``with_aux=True`` (fusing them would cost as much as fusing the prediction).
        """
        if self.training or scales is None:
            scales = self.train_scales if self.training else self.infer_scales
        scales = sorted(float(s) for s in scales)
        with_aux = self.training if with_aux is None else with_aux
        if self.mscale == "hierarchical":
            return self._forward_hierarchical(images, scales, with_aux)
        if self.mscale == "explicit":
            return self._forward_explicit(images, scales, with_aux)
        return self._forward_average(images, scales, with_aux)

    def _run_scale(self, images: Tensor, scale: float, attention: Attention, with_aux: bool) -> dict[str, Tensor]:
        """Segment ``images`` resized by ``scale``; every output resized to that scaled input's size."""
        x = rescale(images, scale)
        size = x.shape[-2:]
        out = self.segment(x)
        result = {"pred": resize_to(out.logits, size)}
        if with_aux and out.aux is not None:
            result["aux"] = resize_to(out.aux, size)
        if attention != "none":
            assert self.scale_attn is not None, "subclasses build scale_attn whenever mscale uses attention"
            score = self.scale_attn(out.feats)
            # the published model applies the sigmoid before upsampling
            result["attn"] = resize_to(torch.sigmoid(score) if attention == "sigmoid" else score, size)
        return result

    def _forward_hierarchical(self, images: Tensor, scales: list[float], with_aux: bool) -> dict[str, Tensor]:
        largest = scales[-1]
        # training runs the head at the largest scale too (output unused) so its BN statistics see that scale
        attend: dict[float, Attention] = {s: "sigmoid" if s != largest or self.training else "none" for s in scales}
        outs = {s: self._run_scale(images, s, attend[s], with_aux) for s in scales}
        attns = {s: outs[s]["attn"] for s in scales if s != largest}
        size = images.shape[-2:]
        result = {"pred": resize_to(hierarchical_fuse({s: o["pred"] for s, o in outs.items()}, attns), size)}
        if "aux" in outs[largest]:
            result["aux"] = resize_to(hierarchical_fuse({s: o["aux"] for s, o in outs.items()}, attns), size)
        for s in scales:
            result.update(self._scale_outputs(s, outs[s]))
            if s in attns:
                result[scale_key("attn", s)] = attns[s]
        return result

    def _forward_explicit(self, images: Tensor, scales: list[float], with_aux: bool) -> dict[str, Tensor]:
        size = images.shape[-2:]
        outs = {s: self._run_scale(images, s, "score", with_aux) for s in scales}
        scores = [resize_to(outs[s]["attn"], size) for s in scales]
        pred, weights = explicit_fuse([resize_to(outs[s]["pred"], size) for s in scales], scores)
        result = {"pred": pred}
        if "aux" in outs[scales[0]]:
            result["aux"], _ = explicit_fuse([resize_to(outs[s]["aux"], size) for s in scales], scores)
        for i, s in enumerate(scales):
            result.update(self._scale_outputs(s, outs[s]))
            result[scale_key("attn", s)] = weights[:, i : i + 1]
        return result

    def _forward_average(self, images: Tensor, scales: list[float], with_aux: bool) -> dict[str, Tensor]:
        size = images.shape[-2:]
        outs = {s: self._run_scale(images, s, "none", with_aux) for s in scales}
        result = {"pred": average_fuse([o["pred"] for o in outs.values()], size)}
        if "aux" in outs[scales[0]]:
            result["aux"] = average_fuse([o["aux"] for o in outs.values()], size)
        for s in scales:
            result.update(self._scale_outputs(s, outs[s]))
        return result

    @staticmethod
    def _scale_outputs(scale: float, out: dict[str, Tensor]) -> dict[str, Tensor]:
        keys = [key for key in ("pred", "aux") if key in out]
        return {scale_key(key, scale): out[key] for key in keys}
