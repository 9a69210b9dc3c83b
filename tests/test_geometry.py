"""The network's geometry against the city's: the receptive-field measurement, on networks whose receptive
field is known, and the tiny HRNet-OCR's."""

from __future__ import annotations

import torch
from torch import nn

from autolabel.models.mscale import rescale, resize_to
from autolabel.synth import v2
from autolabel.workflows.geometry import city_vs_network, receptive_field, tiny_model


class ConvStack(nn.Module):
    """``depth`` 3x3 convolutions at the scale asked for: receptive field radius ``depth`` input pixels."""

    def __init__(self, depth: int):
        super().__init__()
        torch.manual_seed(0)
        layers = [nn.Conv2d(3 if i == 0 else 4, 4, 3, padding=1) for i in range(depth)]
        self.net = nn.Sequential(*layers, nn.Conv2d(4, 2, 1))

    def forward(self, images: torch.Tensor, scales: list[float]) -> dict[str, torch.Tensor]:
        (scale,) = scales
        return {"pred": resize_to(self.net(rescale(images, scale)), images.shape[-2:])}


def test_receptive_field_of_a_conv_stack_is_its_depth_scaled_by_one_over_the_scale():
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    radii = receptive_field(ConvStack(depth=6), images, shares=(0.9999,))
    r = {key: value["99%"] for key, value in radii.items()}
    assert r["1x"] == 6  # six 3x3 convs: 6 pixels each way
    assert 3 <= r["2x"] <= 4  # 6 pixels of the 2x image are 3 of the image (+ 1 for the bilinear resizes)
    assert 12 <= r["0.5x"] <= 14  # 6 pixels of the 0.5x image are 12 (+ the resizes' own reach)
    shares = receptive_field(ConvStack(depth=6), images, scales=(1.0,), shares=(0.5, 0.9))["1x"]
    assert shares["50%"] < shares["90%"] <= 6  # the gradient is densest at the centre


def test_tiny_hrnet_sees_farther_in_image_pixels_the_smaller_the_scale():
    images = torch.randn(1, 3, 64, 128, generator=torch.Generator().manual_seed(2))
    radii = receptive_field(tiny_model(), images, shares=(0.5,))
    r = {key: value["50%"] for key, value in radii.items()}
    assert r["0.5x"] > r["1x"] > r["2x"] > 0, r


def test_city_vs_network_reports_widths_and_the_share_between_the_radii():
    radii = {"a": v2.RECEPTIVE_FIELD_PX, "none": {"2x": {"50%": 0}, "1x": {"50%": 0}, "0.5x": {"50%": 0}}}
    design = city_vs_network(radii, scenes=3, size=(256, 128))
    assert set(design["thin_widths"]) == {"pole", "fence"}
    between = design["context_vs_receptive_field"]["a"]["50%"]["beyond_2x_within_0.5x"]
    assert 0.0 < between < 1.0
    nothing = design["context_vs_receptive_field"]["none"]["50%"]
    assert nothing["beyond_2x_within_0.5x"] == 0.0 and nothing["within_2x"] == 0.0  # every distance is >= 1
    assert design["logit_stride_px"] == {"0.5x": 8, "1x": 4, "2x": 2}
    assert design["context_distance"]["all"]["pixels"] > 0
