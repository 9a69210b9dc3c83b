"""Drawing one street scene of the synthetic city, in the version asked for.

See :mod:`autolabel.synth` for what the scenes model and why; :mod:`~autolabel.synth.v1` and
:mod:`~autolabel.synth.v2` hold the versions.
"""

from __future__ import annotations

import numpy as np

from autolabel.errors import ConfigError
from autolabel.synth import v1, v2
from autolabel.synth.draw import LABEL_ID, SYNTH_CLASSES, Scene

__all__ = ["LABEL_ID", "SYNTH_CLASSES", "SYNTH_VERSION", "SYNTH_VERSIONS", "Scene", "render_scene"]

SYNTH_VERSIONS = {1: v1.render_scene, 2: v2.render_scene}
SYNTH_VERSION = 2  # what `autolabel synth` makes unless told otherwise


def render_scene(rng: np.random.Generator, width: int, height: int, version: int = SYNTH_VERSION) -> Scene:
    """Draw one street scene of ``width`` x ``height`` pixels with ``rng``, as city version ``version`` does."""
    if version not in SYNTH_VERSIONS:
        raise ConfigError(f"synth version: {version!r}; expected one of {sorted(SYNTH_VERSIONS)}")
    return SYNTH_VERSIONS[version](rng, width, height)
