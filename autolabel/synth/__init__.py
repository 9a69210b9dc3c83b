"""A procedurally generated street scene dataset in the exact Cityscapes layout ("synthetic city").

It is small enough to make on a laptop and built so that the multi-scale method matters (see
``docs/synthetic_city.md`` for what it models and why):

- thin poles and sign posts 1-3 px wide (at the generated size, whatever it is) that halving the image erases;
- road, sidewalk and terrain drawn from *one* texture distribution with a per-region random colour, so a
  local patch cannot tell them apart and only the layout can (road in the middle, sidewalk between road and
  buildings, terrain next to vegetation or between road and sidewalk);
- ``gtFine`` labelIds for train/val and ``gtCoarse`` labelIds that look like Cityscapes' coarse polygons:
  every region shrunk away from its boundaries by more than :func:`coarse_band_px` pixels, blocky edges, small
  and thin objects mostly left out, unlabelled = labelId 0.

Each image is drawn from its own generator seeded by ``(seed, split, index)``, so the files do not depend on
how many workers made them or in which order.

Modules, each importing only the ones before it: :mod:`~autolabel.synth.coarse` (the coarse-label degrader),
:mod:`~autolabel.synth.draw` (the classes, the canvas, the vertical world), :mod:`~autolabel.synth.v1` (the
version-1 scene: layout and objects), :mod:`~autolabel.synth.render` (one scene of a given version),
:mod:`~autolabel.synth.write` (a whole city on disk: naming, ``synth.json``, worker pool).
"""

from autolabel.synth.coarse import coarse_band_px, coarse_from_fine
from autolabel.synth.render import LABEL_ID, SYNTH_CLASSES, Scene, render_scene
from autolabel.synth.write import SynthSettings, city_name, image_rng, image_stem, make_synthetic_city

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
