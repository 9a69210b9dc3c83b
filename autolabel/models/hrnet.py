"""HRNetV2 backbone: parallel high-to-low resolution branches, repeatedly fused, output at stride 4.

Module and attribute names follow the published HRNetV2 code so that a W48 ``state_dict`` has exactly the
keys of the released NVIDIA checkpoints (``conv1``, ``layer1``, ``transition1``, ``stage2.0.branches``,
``stage2.0.fuse_layers`` ...). The structure numbers of each width live in :class:`HRNetSpec`.
"""

from __future__ import annotations

import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

BN_MOMENTUM = 0.1


@dataclass(frozen=True)
class StageSpec:
    """One HRNet stage: ``num_modules`` exchange modules over ``len(channels)`` parallel branches."""

    num_modules: int
    num_blocks: tuple[int, ...]  # BasicBlocks per branch in each module
    channels: tuple[int, ...]  # branch widths, high to low resolution


@dataclass(frozen=True)
class HRNetSpec:
    """The structure numbers of one HRNetV2 width, plus the OCR / attention head widths used with it."""

    stem_channels: int  # the two stride-2 3x3 convs
    stage1_planes: int  # Bottleneck planes of layer1 (output = planes * 4)
    stage1_blocks: int
    stages: tuple[StageSpec, StageSpec, StageSpec]  # stages 2, 3, 4
    ocr_mid_channels: int
    ocr_key_channels: int
    attn_channels: int  # bottleneck width of the scale-attention head

    @property
    def out_channels(self) -> int:
        """Channels of the concatenated stride-4 output (720 for W48)."""
        return sum(self.stages[-1].channels)


HRNET_SPECS: Mapping[str, HRNetSpec] = types.MappingProxyType(
    {
        "w48": HRNetSpec(
            stem_channels=64,
            stage1_planes=64,
            stage1_blocks=4,
            stages=(
                StageSpec(1, (4, 4), (48, 96)),
                StageSpec(4, (4, 4, 4), (48, 96, 192)),
                StageSpec(3, (4, 4, 4, 4), (48, 96, 192, 384)),
            ),
            ocr_mid_channels=512,
            ocr_key_channels=256,
            attn_channels=256,
        ),
        "w18": HRNetSpec(
            stem_channels=64,
            stage1_planes=64,
            stage1_blocks=4,
            stages=(
                StageSpec(1, (4, 4), (18, 36)),
                StageSpec(4, (4, 4, 4), (18, 36, 72)),
                StageSpec(3, (4, 4, 4, 4), (18, 36, 72, 144)),
            ),
            ocr_mid_channels=256,
            ocr_key_channels=128,
            attn_channels=128,
        ),
        "w18_small": HRNetSpec(  # HRNetV2-W18-Small-v2
            stem_channels=64,
            stage1_planes=64,
            stage1_blocks=2,
            stages=(
                StageSpec(1, (2, 2), (18, 36)),
                StageSpec(3, (2, 2, 2), (18, 36, 72)),
                StageSpec(2, (2, 2, 2, 2), (18, 36, 72, 144)),
            ),
            ocr_mid_channels=256,
            ocr_key_channels=128,
            attn_channels=128,
        ),
        "tiny": HRNetSpec(  # CPU tests and the demo teacher
            stem_channels=16,
            stage1_planes=16,
            stage1_blocks=1,
            stages=(
                StageSpec(1, (1, 1), (8, 16)),
                StageSpec(1, (1, 1, 1), (8, 16, 32)),
                StageSpec(1, (1, 1, 1, 1), (8, 16, 32, 64)),
            ),
            ocr_mid_channels=32,
            ocr_key_channels=16,
            attn_channels=16,
        ),
    }
)


def conv_bn(in_ch: int, out_ch: int, *, kernel_size: int, stride: int = 1, relu: bool = True) -> nn.Sequential:
    """conv (no bias) -> BN (-> ReLU): the unit of HRNet's transition and fuse layers."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_ch, momentum=BN_MOMENTUM),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection (HRNet branches)."""

    expansion = 1

    def __init__(self, in_ch: int, planes: int, *, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (carrying stride and dilation) -> 1x1 expand (x4), with a residual connection."""

    expansion = 4

    def __init__(
        self,
        in_ch: int,
        planes: int,
        *,
        stride: int = 1,
        dilation: int = 1,
        downsample: nn.Module | None = None,
        bn_momentum: float = BN_MOMENTUM,
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, momentum=bn_momentum)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, momentum=bn_momentum)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion, momentum=bn_momentum)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def make_layer(
    block: type[BasicBlock] | type[Bottleneck], in_ch: int, planes: int, num_blocks: int, *, stride: int = 1
) -> nn.Sequential:
    """``num_blocks`` residual blocks; the first one projects the input when its shape changes."""
    downsample = None
    if stride != 1 or in_ch != planes * block.expansion:
        downsample = conv_bn(in_ch, planes * block.expansion, kernel_size=1, stride=stride, relu=False)
    blocks = [block(in_ch, planes, stride=stride, downsample=downsample)]
    blocks += [block(planes * block.expansion, planes) for _ in range(1, num_blocks)]
    return nn.Sequential(*blocks)


class HighResolutionModule(nn.Module):
    """Runs each branch, then every output branch sums all inputs resampled to its resolution."""

    def __init__(self, *, channels: Sequence[int], num_blocks: Sequence[int]):
        super().__init__()
        self.branches = nn.ModuleList(
            make_layer(BasicBlock, ch, ch, n) for ch, n in zip(channels, num_blocks, strict=True)
        )
        self.fuse_layers = nn.ModuleList(
            # None where src == dst: kept as add_module allows, though ModuleList's stubs say Module only
            nn.ModuleList(self._fuse_layer(channels, src, dst) for src in range(len(channels)))  # type: ignore[misc]
            for dst in range(len(channels))
        )
        self.relu = nn.ReLU(inplace=True)

    @staticmethod
    def _fuse_layer(channels: Sequence[int], src: int, dst: int) -> nn.Module | None:
        if src == dst:
            return None
        if src > dst:  # lower resolution: 1x1 to the target width, upsampled in forward
            return conv_bn(channels[src], channels[dst], kernel_size=1, relu=False)
        # higher resolution: one stride-2 3x3 per halving; only the last changes width and has no ReLU
        steps = dst - src
        last = steps - 1
        return nn.Sequential(
            *(
                conv_bn(
                    channels[src],
                    channels[dst] if k == last else channels[src],
                    kernel_size=3,
                    stride=2,
                    relu=k != last,
                )
                for k in range(steps)
            )
        )

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs, strict=True)]
        if len(xs) == 1:
            return xs
        return [self.relu(self._fuse_into(dst, xs)) for dst in range(len(xs))]

    def _fuse_into(self, dst: int, xs: list[Tensor]) -> Tensor:
        layers = self.fuse_layers[dst]
        assert isinstance(layers, nn.ModuleList)  # fuse_layers is a ModuleList of ModuleLists
        out = xs[0] if dst == 0 else layers[0](xs[0])
        for src in range(1, len(xs)):
            if src == dst:
                out = out + xs[src]
            elif src > dst:
                out = out + F.interpolate(
                    layers[src](xs[src]), size=xs[dst].shape[-2:], mode="bilinear", align_corners=False
                )
            else:
                out = out + layers[src](xs[src])
        return out


def make_transition(pre: Sequence[int], cur: Sequence[int]) -> nn.ModuleList:
    """Adapts the previous stage's branches to the next: change widths, add one lower-resolution branch."""
    layers: list[nn.Module | None] = []
    for i, ch in enumerate(cur):
        if i < len(pre):
            layers.append(conv_bn(pre[i], ch, kernel_size=3) if pre[i] != ch else None)
        else:  # a new branch made from the lowest-resolution one with stride-2 convs
            steps = i + 1 - len(pre)
            layers.append(
                nn.Sequential(
                    *(
                        conv_bn(pre[-1], ch if k == steps - 1 else pre[-1], kernel_size=3, stride=2)
                        for k in range(steps)
                    )
                )
            )
    # None entries are kept (as add_module allows); ModuleList's stubs say Module only
    return nn.ModuleList(layers)  # type: ignore[arg-type]


class HRNetV2(nn.Module):
    """HRNetV2 trunk: every branch upsampled to stride 4, concatenated: (B, spec.out_channels, H/4, W/4)."""

    # set with setattr in __init__, under the published names
    transition1: nn.ModuleList
    transition2: nn.ModuleList
    transition3: nn.ModuleList
    stage2: nn.Sequential
    stage3: nn.Sequential
    stage4: nn.Sequential

    def __init__(self, *, spec: HRNetSpec):
        super().__init__()
        self.out_channels = spec.out_channels
        stem = spec.stem_channels
        self.conv1 = nn.Conv2d(3, stem, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem, momentum=BN_MOMENTUM)
        self.conv2 = nn.Conv2d(stem, stem, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(stem, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = make_layer(Bottleneck, stem, spec.stage1_planes, spec.stage1_blocks)

        prev: tuple[int, ...] = (spec.stage1_planes * Bottleneck.expansion,)
        for index, stage in enumerate(spec.stages, start=1):
            # attribute names transition1/stage2, transition2/stage3, transition3/stage4 as published
            setattr(self, f"transition{index}", make_transition(prev, stage.channels))
            setattr(
                self,
                f"stage{index + 1}",
                nn.Sequential(
                    *(
                        HighResolutionModule(channels=stage.channels, num_blocks=stage.num_blocks)
                        for _ in range(stage.num_modules)
                    )
                ),
            )
            prev = stage.channels

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        xs = [self.layer1(x)]
        for transition, stage in (
            (self.transition1, self.stage2),
            (self.transition2, self.stage3),
            (self.transition3, self.stage4),
        ):
            xs = stage(self._transit(transition, xs))
        size = xs[0].shape[-2:]
        ups = [F.interpolate(x, size=size, mode="bilinear", align_corners=False) for x in xs[1:]]
        return torch.cat([xs[0], *ups], dim=1)  # (B, sum(channels), H/4, W/4)

    @staticmethod
    def _transit(transition: nn.ModuleList, xs: list[Tensor]) -> list[Tensor]:
        # branches beyond the previous stage's count grow out of its lowest-resolution branch
        inputs = [xs[min(i, len(xs) - 1)] for i in range(len(transition))]
        return [x if layer is None else layer(x) for layer, x in zip(transition, inputs, strict=True)]
