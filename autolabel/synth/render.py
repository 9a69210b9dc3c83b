"""Drawing one street scene of the synthetic city, in the version asked for.

See :mod:`autolabel.synth` for what the scenes model and why; :mod:`~autolabel.synth.v1` holds version 1.
"""

from __future__ import annotations

import numpy as np

from autolabel.synth import v1
from autolabel.synth.draw import LABEL_ID, SYNTH_CLASSES, Scene

__all__ = ["LABEL_ID", "SYNTH_CLASSES", "Scene", "render_scene"]


def render_scene(rng: np.random.Generator, width: int, height: int) -> Scene:
    """Draw one street scene of ``width`` x ``height`` pixels with ``rng``."""
    return v1.render_scene(rng, width, height)
