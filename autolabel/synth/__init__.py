"""A procedurally generated street scene dataset in the exact Cityscapes layout ("synthetic city").

It is small enough to make on a laptop and built so that the multi-scale method matters (see
``docs/synthetic_city.md`` for what it models, why, and the measurements). Version 2 (the default) is designed
from the network's geometry:

- thin poles, fence bars and rails 4-7 px wide at the generated size: one to two logit pixels of a stride-4
  network at 1.0x, under one at 0.5x, two or more at 2.0x;
- road, sidewalk and terrain painted as one surface in each image, told apart only by the signs along their
  edges and the street's layout, with most bare ground farther from any such cue than the network sees at
  2.0x but within what it sees at 0.5x;
- ``gtFine`` labelIds for train/val and ``gtCoarse`` labelIds that look like Cityscapes' coarse polygons:
  every region shrunk away from its boundaries by more than :func:`coarse_band_px` pixels, blocky edges, small
  and thin objects mostly left out, unlabelled = labelId 0.

Version 1 (``synth --version 1``) remakes the cities earlier results were made with, byte for byte.

Each image is drawn from its own generator seeded by ``(seed, split, index)``, so the files do not depend on
how many workers made them or in which order.

Modules, each importing only the ones before it: :mod:`~autolabel.synth.coarse` (the coarse-label degrader),
:mod:`~autolabel.synth.draw` (the classes, the canvas, the vertical world), :mod:`~autolabel.synth.v1` and
:mod:`~autolabel.synth.v2` (the scenes: layout and objects), :mod:`~autolabel.synth.render` (one scene of a
given version), :mod:`~autolabel.synth.write` (a whole city on disk: naming, ``synth.json``, worker pool),
:mod:`~autolabel.synth.measure` (the properties, measured without a network).
"""

from autolabel.synth.coarse import coarse_band_px, coarse_from_fine
from autolabel.synth.render import LABEL_ID, SYNTH_CLASSES, SYNTH_VERSION, SYNTH_VERSIONS, Scene, render_scene
from autolabel.synth.write import SynthSettings, city_name, image_rng, image_stem, make_synthetic_city

__all__ = [
    "LABEL_ID",
    "SYNTH_CLASSES",
    "SYNTH_VERSION",
    "SYNTH_VERSIONS",
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
