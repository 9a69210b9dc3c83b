"""DeepLabV3+ with a ResNet-50 trunk: the second network of the paper's Table 3 ablation.

The trunk is dilated to output stride 8 (layer3 and layer4 keep resolution with dilation 2 and 4); the
decoder's 256-channel features before the classifier feed the scale-attention head, as the OCR features do
for HRNet-OCR. DeepLabV3+ has no auxiliary head, so its outputs have no ``aux``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from autolabel.models.hrnet import Bottleneck, conv_bn
from autolabel.models.mscale import MscaleMode, MultiScaleSegmenter, ScaleAttentionHead, SegmentOutput

RESNET50_BLOCKS = (3, 4, 6, 3)


def make_resnet_layer(in_ch: int, planes: int, num_blocks: int, *, stride: int, dilation: int) -> nn.Sequential:
    """A ResNet stage of Bottlenecks; the first block projects the input (and carries the stride)."""
    downsample = None
    if stride != 1 or in_ch != planes * Bottleneck.expansion:
        downsample = conv_bn(in_ch, planes * Bottleneck.expansion, kernel_size=1, stride=stride, relu=False)
    blocks = [Bottleneck(in_ch, planes, stride=stride, dilation=dilation, downsample=downsample)]
    out_ch = planes * Bottleneck.expansion
    blocks += [Bottleneck(out_ch, planes, dilation=dilation) for _ in range(1, num_blocks)]
    return nn.Sequential(*blocks)


class ResNet50(nn.Module):
    """ResNet-50 returning (stride-4 features of layer1 (256 ch), final features (2048 ch))."""

    def __init__(self, *, output_stride: int = 8):
        super().__init__()
        if output_stride not in (8, 16):
            raise ValueError(f"output_stride must be 8 or 16, got {output_stride}")
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        # output stride 8: layers 3 and 4 trade their stride for dilation; 16: only layer 4 does
        strides, dilations = ((2, 1, 1), (1, 2, 4)) if output_stride == 8 else ((2, 2, 1), (1, 1, 2))
        blocks = RESNET50_BLOCKS
        self.layer1 = make_resnet_layer(64, 64, blocks[0], stride=1, dilation=1)
        self.layer2 = make_resnet_layer(256, 128, blocks[1], stride=strides[0], dilation=dilations[0])
        self.layer3 = make_resnet_layer(512, 256, blocks[2], stride=strides[1], dilation=dilations[1])
        self.layer4 = make_resnet_layer(1024, 512, blocks[3], stride=strides[2], dilation=dilations[2])
        self.out_channels = 2048
        self.low_level_channels = 256

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        low = self.layer1(x)
        return low, self.layer4(self.layer3(self.layer2(low)))


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: a 1x1 conv, three dilated 3x3 convs and image-level pooling."""

    def __init__(self, *, in_channels: int, channels: int = 256, rates: Sequence[int] = (12, 24, 36)):
        super().__init__()
        self.convs = nn.ModuleList([conv_bn(in_channels, channels, kernel_size=1)])
        for rate in rates:
            self.convs.append(
                nn.Sequential(
                    nn.Conv2d(in_channels, channels, 3, padding=rate, dilation=rate, bias=False),
                    nn.BatchNorm2d(channels),
                    nn.ReLU(inplace=True),
                )
            )
        # no BatchNorm after global pooling: it would fail on a batch of one image in training
        self.image_pool = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_channels, channels, 1), nn.ReLU(inplace=True)
        )
        self.out_channels = channels * (len(rates) + 2)

    def forward(self, x: Tensor) -> Tensor:
        pooled = self.image_pool(x).expand(-1, -1, *x.shape[-2:])  # (B, channels, H, W)
        return torch.cat([*(conv(x) for conv in self.convs), pooled], dim=1)


class DeepLabV3Plus(MultiScaleSegmenter):
    """ResNet-50 -> ASPP -> decoder with stride-4 skip -> classifier, under the multi-scale wrapper."""

    def __init__(
        self,
        *,
        num_classes: int,
        mscale: MscaleMode = "hierarchical",
        train_scales: Sequence[float] = (0.5, 1.0),
        infer_scales: Sequence[float] = (0.5, 1.0, 2.0),
        output_stride: int = 8,
        attn_channels: int = 256,
        attn_inner_3x3: bool = True,
    ):
        super().__init__(num_classes=num_classes, mscale=mscale, train_scales=train_scales, infer_scales=infer_scales)
        self.backbone = ResNet50(output_stride=output_stride)
        rates = (6, 12, 18) if output_stride == 16 else (12, 24, 36)
        self.aspp = ASPP(in_channels=self.backbone.out_channels, rates=rates)
        self.bot_aspp = conv_bn(self.aspp.out_channels, 256, kernel_size=1)
        self.bot_fine = conv_bn(self.backbone.low_level_channels, 48, kernel_size=1)
        self.final = nn.Sequential(conv_bn(256 + 48, 256, kernel_size=3), conv_bn(256, 256, kernel_size=3))
        self.cls = nn.Conv2d(256, num_classes, 1)
        self.scale_attn = (
            ScaleAttentionHead(in_channels=256, mid_channels=attn_channels, inner_3x3=attn_inner_3x3)
            if self.uses_attention
            else None
        )

    def segment(self, x: Tensor) -> SegmentOutput:
        low, high = self.backbone(x)
        context = self.bot_aspp(self.aspp(high))
        context = F.interpolate(context, size=low.shape[-2:], mode="bilinear", align_corners=False)
        feats = self.final(torch.cat([self.bot_fine(low), context], dim=1))  # (B, 256, H/4, W/4)
        return SegmentOutput(logits=self.cls(feats), aux=None, feats=feats)
