"""OCR head (object-contextual representations, Yuan et al. 2020) and the HRNetV2-OCR segmenter.

Attribute names (``conv3x3_ocr``, ``ocr_distri_head.object_context_block.f_pixel`` ...) follow the published
code so the W48 model loads the released weights without renaming.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from autolabel.models.hrnet import HRNetSpec, HRNetV2
from autolabel.models.mscale import MscaleMode, MultiScaleSegmenter, ScaleAttentionHead, SegmentOutput


def bn_relu(channels: int) -> nn.Sequential:
    """BN -> ReLU, kept as its own Sequential because the published key names nest it (``x.1.0.weight``)."""
    return nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True))


def conv1x1_bn_relu(in_ch: int, out_ch: int) -> list[nn.Module]:
    return [nn.Conv2d(in_ch, out_ch, 1, bias=False), bn_relu(out_ch)]


def spatial_gather(feats: Tensor, region_logits: Tensor) -> Tensor:
    """One feature vector per class: ``feats`` averaged with a softmax over space of each class's logits.

    feats (B, F, H, W), region_logits (B, K, H, W) -> object context (B, F, K, 1).

    Always in fp32, autocast or not: a softmax over H x W pixels gives weights around 1 / HW (8e-6 for the
    256x512 features of a 1024x2048 image), below fp16's smallest normal number (6e-5), where it keeps only a
    few bits; bf16 keeps 3 digits of each, and a sum over that many pixels loses the rest. For fp32 inputs
    nothing changes (no copies).
    """
    b, k = region_logits.shape[:2]
    with torch.autocast(device_type=feats.device.type, enabled=False):
        weights = torch.softmax(region_logits.float().reshape(b, k, -1), dim=2)  # (B, K, HW)
        flat = feats.float().reshape(b, feats.shape[1], -1).transpose(1, 2)  # (B, HW, F)
        context = torch.matmul(weights, flat)  # (B, K, F)
    return context.transpose(1, 2).unsqueeze(3)  # (B, F, K, 1)


class ObjectAttentionBlock(nn.Module):
    """Each pixel attends over the K object vectors (scaled dot product) and takes their weighted value."""

    def __init__(self, *, in_channels: int, key_channels: int):
        super().__init__()
        self.key_channels = key_channels
        self.f_pixel = nn.Sequential(
            *conv1x1_bn_relu(in_channels, key_channels), *conv1x1_bn_relu(key_channels, key_channels)
        )
        self.f_object = nn.Sequential(
            *conv1x1_bn_relu(in_channels, key_channels), *conv1x1_bn_relu(key_channels, key_channels)
        )
        self.f_down = nn.Sequential(*conv1x1_bn_relu(in_channels, key_channels))
        self.f_up = nn.Sequential(*conv1x1_bn_relu(key_channels, in_channels))

    def forward(self, x: Tensor, proxy: Tensor) -> Tensor:
        b, _, h, w = x.shape
        query = self.f_pixel(x).reshape(b, self.key_channels, -1).transpose(1, 2)  # (B, HW, Ck)
        key = self.f_object(proxy).reshape(b, self.key_channels, -1)  # (B, Ck, K)
        value = self.f_down(proxy).reshape(b, self.key_channels, -1).transpose(1, 2)  # (B, K, Ck)
        sim = torch.softmax(torch.matmul(query, key) * self.key_channels**-0.5, dim=-1)  # (B, HW, K)
        context = torch.matmul(sim, value).transpose(1, 2).reshape(b, self.key_channels, h, w)
        return self.f_up(context)


class SpatialOCR(nn.Module):
    """Object context for every pixel, concatenated with the pixel features and projected back."""

    def __init__(self, *, in_channels: int, key_channels: int, out_channels: int, dropout: float):
        super().__init__()
        self.object_context_block = ObjectAttentionBlock(in_channels=in_channels, key_channels=key_channels)
        self.conv_bn_dropout = nn.Sequential(
            nn.Conv2d(2 * in_channels, out_channels, 1, bias=False),
            bn_relu(out_channels),
            nn.Dropout2d(dropout),
        )

    def forward(self, feats: Tensor, proxy: Tensor) -> Tensor:
        context = self.object_context_block(feats, proxy)
        return self.conv_bn_dropout(torch.cat([context, feats], dim=1))


class OCRHead(nn.Module):
    """Soft object regions (aux head) -> per-class context -> OCR features -> class logits.

    Returns (logits, aux logits, OCR features) at the trunk's resolution; the OCR features feed the
    scale-attention head.
    """

    def __init__(self, *, in_channels: int, num_classes: int, mid_channels: int, key_channels: int, dropout: float):
        super().__init__()
        self.conv3x3_ocr = nn.Sequential(nn.Conv2d(in_channels, mid_channels, 3, padding=1), bn_relu(mid_channels))
        self.ocr_distri_head = SpatialOCR(
            in_channels=mid_channels, key_channels=key_channels, out_channels=mid_channels, dropout=dropout
        )
        self.cls_head = nn.Conv2d(mid_channels, num_classes, 1)
        self.aux_head = nn.Sequential(
            nn.Conv2d(in_channels, in_channels, 1),
            bn_relu(in_channels),
            nn.Conv2d(in_channels, num_classes, 1),
        )

    def forward(self, trunk_feats: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        feats = self.conv3x3_ocr(trunk_feats)
        aux = self.aux_head(trunk_feats)
        context = spatial_gather(feats, aux)
        ocr_feats = self.ocr_distri_head(feats, context)
        return self.cls_head(ocr_feats), aux, ocr_feats


class HRNetOCR(MultiScaleSegmenter):
    """HRNetV2 + OCR head + multi-scale attention; ``spec = HRNET_SPECS["w48"]`` is the published teacher."""

    def __init__(
        self,
        *,
        spec: HRNetSpec,
        num_classes: int,
        mscale: MscaleMode = "hierarchical",
        train_scales: Sequence[float] = (0.5, 1.0),
        infer_scales: Sequence[float] = (0.5, 1.0, 2.0),
        dropout: float = 0.05,
        attn_inner_3x3: bool = True,
    ):
        super().__init__(num_classes=num_classes, mscale=mscale, train_scales=train_scales, infer_scales=infer_scales)
        self.backbone = HRNetV2(spec=spec)
        self.ocr = OCRHead(
            in_channels=self.backbone.out_channels,
            num_classes=num_classes,
            mid_channels=spec.ocr_mid_channels,
            key_channels=spec.ocr_key_channels,
            dropout=dropout,
        )
        self.scale_attn = (
            ScaleAttentionHead(
                in_channels=spec.ocr_mid_channels, mid_channels=spec.attn_channels, inner_3x3=attn_inner_3x3
            )
            if self.uses_attention
            else None
        )

    def segment(self, x: Tensor) -> SegmentOutput:
        logits, aux, ocr_feats = self.ocr(self.backbone(x))
        return SegmentOutput(logits=logits, aux=aux, feats=ocr_feats)
