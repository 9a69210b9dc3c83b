"""The synthetic city: a procedurally generated street scene dataset in the Cityscapes layout."""

from autolabel.synth.write import (
    LABEL_ID,
    SYNTH_CLASSES,
    Scene,
    SynthSettings,
    city_name,
    coarse_band_px,
    coarse_from_fine,
    image_rng,
    image_stem,
    make_synthetic_city,
    render_scene,
)

__all__ = [
    "LABEL_ID",
    "SYNTH_CLASSES",
    "Scene",
    "SynthSettings",
    "city_name",
    "coarse_band_px",
    "coarse_from_fine",
    "image_rng",
    "image_stem",
    "make_synthetic_city",
    "render_scene",
]
