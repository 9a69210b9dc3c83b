"""Thresholds from somewhere else: ``calibration.json`` (``autolabel calibrate``) and per-class thresholds by hand.

A calibration file holds, for one teacher (its sha256) run one way (scales, flip, tiling, precision): the
temperature ``T`` that divides the logits before the softmax (a scalar, or one per predicted class), the
expected calibration error before and after, reliability-diagram data, precision and coverage per class at
every threshold, and two sets of per-class thresholds chosen at a target precision: ``calibrated`` (on
``softmax(logits / T)``, what ``generate --calibration`` uses) and ``uncalibrated`` (on ``softmax(logits)``,
what ``rethreshold --calibration`` uses on a label set generated without a temperature: its store holds the
uncalibrated probabilities). Writing the file is :mod:`autolabel.evaluate.calibrate`'s job; this module reads
and checks it for generate and rethreshold.

Per-class thresholds by hand: ``{"road": 0.9, ...}`` from ``generate.class_thresholds``, from a JSON or TOML
file, or from ``road=0.9,car=0.8`` on the command line (:func:`parse_class_thresholds`).
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autolabel.errors import ConfigError, LabelSetError

CALIBRATION_FORMAT = "autolabel-calibration"
CALIBRATION_VERSION = 1
CALIBRATION_FILE = "calibration.json"  # what `autolabel calibrate --out DIR` writes in DIR


@dataclass(frozen=True)
class Calibration:
    """The parts of a calibration file that labelling needs (the rest stays in the file)."""

    path: Path
    sha256: str  # of the file's bytes
    teacher_sha256: str
    classes: tuple[str, ...]
    temperature: float | tuple[float, ...]  # scalar, or one per predicted class
    thresholds: tuple[float, ...]  # per class, on the calibrated probability
    uncalibrated_thresholds: tuple[float, ...]  # per class, on softmax(logits)
    global_threshold: float
    uncalibrated_global_threshold: float
    target_precision: float
    fallback: tuple[str, ...]  # too few pixels: the global threshold
    unreached: tuple[str, ...]  # enough pixels, but no threshold reaches the target
    ece_before: float | None
    ece_after: float | None
    data: str
    split: str | None
    reliability: dict[str, Any]

    @property
    def per_class_temperature(self) -> bool:
        return not isinstance(self.temperature, float)

    def temperature_list(self) -> list[float]:
        """One temperature per class (the scalar repeated)."""
        if isinstance(self.temperature, float):
            return [self.temperature] * len(self.classes)
        return list(self.temperature)

    def summary(self, applied: bool) -> dict[str, Any]:
        """What ``labelset.json`` records of it (``applied``: the logits were divided by its temperature)."""
        return {
            "sha256": self.sha256,
            "teacher_sha256": self.teacher_sha256,
            "data": self.data,
            "split": self.split,
            "applied": bool(applied),
            "temperature": self.temperature if isinstance(self.temperature, float) else list(self.temperature),
            "target_precision": self.target_precision,
            "ece_before": self.ece_before,
            "ece_after": self.ece_after,
            "fallback_classes": list(self.fallback),
            "unreached_classes": list(self.unreached),
            "reliability": self.reliability,
        }

    def check_teacher(self, teacher_sha256: str, teacher: str | Path = "the teacher") -> None:
        """Refuse a calibration made for another teacher (its sha256 differs)."""
        if teacher_sha256 != self.teacher_sha256:
            raise ConfigError(
                f"{self.path}: calibration made for teacher sha256 {self.teacher_sha256[:16]}..., but {teacher} "
                f"is {teacher_sha256[:16]}...; run `autolabel calibrate` with this teacher"
            )

    def check_classes(self, classes: Sequence[str]) -> None:
        if tuple(classes) != self.classes:
            raise ConfigError(
                f"{self.path}: calibration classes {list(self.classes)[:4]}... differ from the label classes "
                f"{list(classes)[:4]}..."
            )


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_calibration(path: str | Path, key: str = "--calibration") -> Calibration:
    """The calibration in ``path``; a :class:`ConfigError` naming ``key``, the file and what is wrong."""
    path = Path(path)
    try:
        data = path.read_bytes()
        raw = json.loads(data)
    except FileNotFoundError:
        raise ConfigError(f"{key} {path}: file not found (`autolabel calibrate --out DIR` writes one)") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{key} {path}: unreadable calibration file ({exc})") from None
    if not isinstance(raw, dict) or raw.get("format") != CALIBRATION_FORMAT:
        raise ConfigError(f"{key} {path}: not a calibration file written by `autolabel calibrate`")
    if raw.get("version") != CALIBRATION_VERSION:
        raise ConfigError(f"{key} {path}: calibration format version {raw.get('version')}, expected 1")
    try:
        classes = tuple(str(n) for n in raw["classes"])
        chosen = raw["thresholds"]
        temperature = raw["temperature"]
        return Calibration(
            path=path,
            sha256=hashlib.sha256(data).hexdigest(),
            teacher_sha256=str(raw["teacher_sha256"]),
            classes=classes,
            temperature=float(temperature) if isinstance(temperature, int | float) else tuple(map(float, temperature)),
            thresholds=_per_class(chosen["calibrated"]["classes"], classes, f"{key} {path}: thresholds.calibrated"),
            uncalibrated_thresholds=_per_class(
                chosen["uncalibrated"]["classes"], classes, f"{key} {path}: thresholds.uncalibrated"
            ),
            global_threshold=float(chosen["calibrated"]["global"]),
            uncalibrated_global_threshold=float(chosen["uncalibrated"]["global"]),
            target_precision=float(raw["target_precision"]),
            fallback=tuple(chosen.get("fallback_classes", ())),
            unreached=tuple(chosen.get("unreached_classes", ())),
            ece_before=raw["ece"]["before"],
            ece_after=raw["ece"]["after"],
            data=str(raw.get("data", "")),
            split=raw.get("split"),
            reliability=dict(raw.get("reliability") or {}),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{key} {path}: malformed calibration file ({type(exc).__name__}: {exc})") from None


def _per_class(mapping: Mapping[str, Any], classes: Sequence[str], where: str) -> tuple[float, ...]:
    if not isinstance(mapping, Mapping) or set(mapping) != set(classes):
        raise ConfigError(f"{where}: expected one threshold per class")
    values = tuple(float(mapping[name]) for name in classes)
    for name, value in zip(classes, values, strict=True):
        _check_threshold(value, f"{where}.{name}")
    return values


def _check_threshold(value: float, where: str) -> None:
    if not 0.0 <= value < 1.0:
        raise ConfigError(f"{where}: {value!r} is out of range, expected a value in [0, 1)")


def thresholds_by_class(
    mapping: Mapping[str, float], classes: Sequence[str], default: float | Sequence[float], key: str
) -> list[float]:
    """One threshold per class: ``mapping``'s for the classes it names, ``default`` (one value, or one per class)
    for the others; a :class:`ConfigError` naming ``key`` for an unknown class or a value outside [0, 1)."""
    base = [float(default)] * len(classes) if isinstance(default, int | float) else [float(v) for v in default]
    unknown = sorted(set(mapping) - set(classes))
    if unknown:
        raise ConfigError(f"{key}: unknown class {unknown[0]!r}; the classes are {', '.join(classes)}")
    for name, value in mapping.items():
        _check_threshold(float(value), f"{key}.{name}")
        base[list(classes).index(name)] = float(value)
    return base


def parse_class_thresholds(text: str, key: str = "--class-thresholds") -> dict[str, float]:
    """``road=0.9,car=0.8``, or a JSON/TOML file holding ``{class name: threshold}``."""
    path = Path(text)
    if "=" not in text or path.is_file():
        return _thresholds_file(path, key)
    found: dict[str, float] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, value = item.rpartition("=")
        try:
            found[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise ConfigError(f"{key} {text!r}: expected name=threshold,... (e.g. road=0.9,car=0.8) or a file")
    return found


def _thresholds_file(path: Path, key: str) -> dict[str, float]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{key} {path}: no such file (or give name=threshold,...)") from None
    except OSError as exc:
        raise ConfigError(f"{key} {path}: unreadable ({exc.strerror or exc})") from None
    try:
        raw = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{key} {path}: not valid {'TOML' if path.suffix == '.toml' else 'JSON'} ({exc})") from None
    if not isinstance(raw, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in raw.values()
    ):
        raise ConfigError(f"{key} {path}: expected a table of class name -> threshold")
    return {str(k): float(v) for k, v in raw.items()}


def require_labelset_classes(meta: Mapping[str, Any], calibration: Calibration) -> None:
    """A calibration applied to a label set must be for its classes and its teacher."""
    calibration.check_classes(meta["classes"])
    if meta.get("teacher_sha256") != calibration.teacher_sha256:
        raise LabelSetError(
            f"{calibration.path}: calibration made for teacher sha256 {calibration.teacher_sha256[:16]}..., the "
            f"label set's teacher is {str(meta.get('teacher_sha256'))[:16]}..."
        )
