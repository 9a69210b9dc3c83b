"""The thresholds and temperature a ``generate`` run labels with, from the config and a calibration file.

- ``generate.threshold`` alone: one global threshold (``threshold_source = {"kind": "threshold"}``).
- ``generate.class_thresholds`` (class name -> threshold): those classes keep a pixel only above their own
  threshold, the others above ``generate.threshold`` (``"class_thresholds"``).
- ``generate.calibration`` (``autolabel calibrate``'s file, made for this very teacher: its sha256 is checked):
  the logits are divided by its temperature before the softmax, and each class keeps a pixel above the
  calibration's calibrated threshold for it; ``generate.threshold`` is unused (the calibration brings its own
  global threshold for the classes with too few pixels to choose one). ``generate.class_thresholds`` still
  overrides the classes it names (``"calibration"``, with those names under ``"overrides"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from autolabel.config import GenerateConfig
from autolabel.labelset.calibration import Calibration, read_calibration, thresholds_by_class


@dataclass(frozen=True)
class LabellingThresholds:
    """What turns the teacher's logits into labels: per-class thresholds and an optional temperature."""

    per_class: tuple[float, ...]
    global_threshold: float
    source: dict[str, Any]
    temperature: float | tuple[float, ...] | None = None
    calibration: Calibration | None = None

    @property
    def uniform(self) -> bool:
        """Every class has the global threshold (the comparison is then a scalar one)."""
        return all(t == self.global_threshold for t in self.per_class)


def global_thresholds(threshold: float, num_classes: int) -> LabellingThresholds:
    return LabellingThresholds(
        per_class=(float(threshold),) * num_classes, global_threshold=float(threshold), source={"kind": "threshold"}
    )


def resolve_thresholds(
    settings: GenerateConfig, class_names: Sequence[str], teacher_sha256: str
) -> LabellingThresholds:
    """The run's thresholds (see the module docstring); a :class:`ConfigError` naming the key or file when the
    calibration is for another teacher or other classes, or a class name is unknown."""
    names = list(class_names)
    overrides = dict(settings.class_thresholds)
    if settings.calibration is None:
        if not overrides:
            return global_thresholds(settings.threshold, len(names))
        per_class = thresholds_by_class(overrides, names, settings.threshold, "generate.class_thresholds")
        return LabellingThresholds(
            per_class=tuple(per_class),
            global_threshold=float(settings.threshold),
            source={"kind": "class_thresholds"},
        )
    calibration = read_calibration(settings.calibration, key="generate.calibration")
    calibration.check_teacher(teacher_sha256)
    calibration.check_classes(names)
    per_class = thresholds_by_class(overrides, names, calibration.thresholds, "generate.class_thresholds")
    source: dict[str, Any] = {"kind": "calibration", "calibration_sha256": calibration.sha256}
    if overrides:
        source["overrides"] = sorted(overrides)
    return LabellingThresholds(
        per_class=tuple(per_class),
        global_threshold=calibration.global_threshold,
        source=source,
        temperature=calibration.temperature,
        calibration=calibration,
    )
