"""``autolabel rethreshold``: a new label set at other thresholds from the confidence store, without the teacher.

The thresholds can come four ways (:func:`choose_thresholds`): one global value (``--threshold``), per class by
hand (``--class-thresholds``), from a calibration file (``--calibration``: its per-class thresholds for the
probabilities this set holds), or by portion (``--portion P``, CBST: per class, the most confident share ``P``
of the pixels predicted as that class, chosen from the per-class confidence histograms in the manifest, so no
pass over the store is needed to choose). Every threshold must be a rung of the set's ladder (a calibration's
are rounded up to the next rung, and that is recorded); a format-2 store (every pixel's class and code)
re-thresholds down as well as up, a format-1 store only upwards. At rungs the result equals a fresh
``generate`` at those thresholds, pixel for pixel.

The result is a new label set: by default in a new folder next to the source (``<name>-<id prefix>``), the
store's files copied as they are; in place only when asked (the labels are rewritten, the store stays). Either
way ``labelset.json`` names the parent (``parent_labelset_id``) and says which thresholds remain available
(``ladder_available``), and the result is verified. Rewriting in place is safe to interrupt and rerun:
re-thresholding labels that already are at the new thresholds changes nothing, and ``labelset.json`` is updated
last. A damaged image never stops the run: it becomes an error row, and the result is complete otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autolabel import labelset
from autolabel.data.datasets import Sample
from autolabel.data.io import read_label
from autolabel.errors import AutolabelError, ConfigError, LabelSetError
from autolabel.labelset import confidence
from autolabel.labelset.calibration import read_calibration, require_labelset_classes, thresholds_by_class
from autolabel.labelset.checksums import FINGERPRINT_KEYS, file_entries, file_sha256
from autolabel.labelset.files import WriteSettings, error_row, finalise_image, remove_image_outputs
from autolabel.labelset.meta import available_thresholds, class_thresholds, store_format
from autolabel.labelset.verify import verify_labelset

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ThresholdRequest:
    """What the user asked for; exactly one of ``calibration`` and ``portion``, or thresholds by value."""

    threshold: float | None = None  # a global threshold (the classes not in class_thresholds)
    class_thresholds: Mapping[str, float] = field(default_factory=dict)
    calibration: Path | None = None
    portion: float | None = None

    def check(self) -> None:
        chosen = [
            name
            for name, given in (
                ("--threshold/--class-thresholds", self.threshold is not None or bool(self.class_thresholds)),
                ("--calibration", self.calibration is not None),
                ("--portion", self.portion is not None),
            )
            if given
        ]
        if not chosen:
            raise ConfigError("say how to re-threshold: --threshold, --class-thresholds, --calibration or --portion")
        if len(chosen) > 1:
            raise ConfigError(f"give one of {', '.join(chosen)}, not several")
        if self.portion is not None and not 0.0 < self.portion <= 1.0:
            raise ConfigError(f"--portion {self.portion:g}: expected a share in (0, 1]")
        if self.threshold is not None and not 0.0 <= self.threshold < 1.0:
            raise ConfigError(f"--threshold {self.threshold:g}: expected a value in [0, 1)")


@dataclass(frozen=True)
class ChosenThresholds:
    """Per-class thresholds (all on the ladder), where they came from, and what else ``labelset.json`` keeps."""

    per_class: tuple[float, ...]
    global_threshold: float
    source: dict[str, Any]
    derived: dict[str, Any] = field(default_factory=dict)  # how they were chosen (achieved shares, rounding)
    calibration: dict[str, Any] | None = None  # replaces the set's "calibration" when given
    calibration_file: str | None = None


@dataclass
class RethresholdResult:
    labelset_id: str
    images: int
    out: Path
    errors: int = 0  # images whose label or confidence map was missing or damaged (error rows now)
    thresholds: ChosenThresholds | None = None
    problems: list[str] = field(default_factory=list)  # what verifying the result found


def choose_thresholds(
    meta: dict[str, Any], request: ThresholdRequest, rows: Sequence[Mapping[str, Any]] = ()
) -> ChosenThresholds:
    """The per-class thresholds ``request`` asks for on this label set (``rows``: its ok manifest rows, for
    ``portion``); a :class:`LabelSetError`/:class:`ConfigError` naming the option when they cannot be had."""
    request.check()
    names = list(meta["classes"])
    current = class_thresholds(meta)
    if request.portion is not None:
        return _by_portion(meta, request.portion, rows)
    if request.calibration is not None:
        return _by_calibration(meta, request.calibration)
    default: float | list[float] = current if request.threshold is None else float(request.threshold)
    per_class = thresholds_by_class(request.class_thresholds, names, default, "--class-thresholds")
    source = {"kind": "class_thresholds"} if request.class_thresholds else {"kind": "threshold"}
    global_threshold = float(meta["threshold"]) if request.threshold is None else float(request.threshold)
    return ChosenThresholds(per_class=tuple(per_class), global_threshold=global_threshold, source=source)


def _by_portion(meta: dict[str, Any], portion: float, rows: Sequence[Mapping[str, Any]]) -> ChosenThresholds:
    """CBST: per class, the rung whose share of the class's pixels above it is closest to ``portion`` (ties: the
    higher rung), from the summed per-image histograms of (class, code)."""
    ladder = available_thresholds(meta)
    levels = len(meta["ladder"]) + 1
    hist = confidence.summed_histogram(rows, len(meta["classes"]), levels)
    if store_format(meta) < 2 or hist is None:
        raise LabelSetError(
            "--portion needs the per-class confidence histograms that generate records in the manifest; this "
            "label set was made before they existed (regenerate it, or give --threshold/--class-thresholds)"
        )
    first = meta["ladder"].index(ladder[0]) if ladder else 0
    per_class: list[float] = []
    shares: dict[str, float | None] = {}
    for c, name in enumerate(meta["classes"]):
        total = int(hist[c].sum())
        if total == 0:  # no pixel predicted as this class: nothing to choose from
            per_class.append(float(meta["threshold"]))
            shares[name] = None
            continue
        kept = np.cumsum(hist[c, ::-1])[::-1][1:]  # kept[j]: pixels with code > j
        candidates = range(first, len(meta["ladder"]))
        best = min(candidates, key=lambda j: (abs(kept[j] / total - portion), -j))
        per_class.append(float(meta["ladder"][best]))
        shares[name] = round(float(kept[best] / total), 6)
    return ChosenThresholds(
        per_class=tuple(per_class),
        global_threshold=float(meta["threshold"]),
        source={"kind": "portion", "portion": float(portion)},
        derived={"portion": float(portion), "kept_share": shares},
    )


def _by_calibration(meta: dict[str, Any], path: Path) -> ChosenThresholds:
    """A calibration's thresholds for the probabilities this set holds: the uncalibrated ones when the set was
    generated without a temperature, the calibrated ones when with this calibration's temperature; each rounded
    up to the next available rung."""
    cal = read_calibration(path)
    require_labelset_classes(meta, cal)
    set_temperature = meta.get("temperature")
    if set_temperature is None:
        wanted, global_threshold, applied = cal.uncalibrated_thresholds, cal.uncalibrated_global_threshold, False
    elif _same_temperature(set_temperature, cal.temperature):
        wanted, global_threshold, applied = cal.thresholds, cal.global_threshold, True
    else:
        raise LabelSetError(
            f"{path}: the label set's probabilities were divided by temperature {set_temperature}, this "
            f"calibration's is {cal.temperature}; neither of its threshold sets describes them"
        )
    ladder = available_thresholds(meta)
    used, rounded = [], {}
    for name, t in zip(meta["classes"], wanted, strict=True):
        rung = _rung_at_or_above(t, ladder)
        used.append(rung)
        if abs(rung - t) > 1e-9:
            rounded[name] = [t, rung]
    if rounded:
        log.info("%d calibration thresholds are not on the ladder; rounded up to the next rung", len(rounded))
    return ChosenThresholds(
        per_class=tuple(used),
        global_threshold=_rung_at_or_above(global_threshold, ladder),
        source={"kind": "calibration", "calibration_sha256": cal.sha256},
        derived={"rounded_up": rounded} if rounded else {},
        calibration=cal.summary(applied=applied),
        calibration_file=str(Path(path).resolve()),
    )


def _rung_at_or_above(threshold: float, ladder: Sequence[float]) -> float:
    """The lowest rung at or above ``threshold``; above the top rung, the top rung (the highest there is)."""
    rung = confidence.next_rung(threshold, ladder)
    return ladder[-1] if rung is None else rung


def _same_temperature(a: Any, b: Any) -> bool:
    left = [float(a)] if isinstance(a, int | float) else [float(v) for v in a]
    right = [float(b)] if isinstance(b, int | float) else [float(v) for v in b]
    return len(left) == len(right) and all(abs(x - y) < 1e-9 for x, y in zip(left, right, strict=True))


def class_rungs(meta: dict[str, Any], per_class: Sequence[float]) -> list[int]:
    """The ladder position of each class's threshold; a format-1 set refuses rungs below a class's current
    threshold (those pixels were dropped when it was generated)."""
    floors = class_thresholds(meta) if store_format(meta) < 2 else [None] * len(per_class)
    return [
        confidence.rung_index(t, meta["ladder"], floor=floor, what=f"threshold of {name!r}")
        for name, t, floor in zip(meta["classes"], per_class, floors, strict=True)
    ]


def rethresholded_meta(meta: dict[str, Any], chosen: ChosenThresholds) -> dict[str, Any]:
    """``labelset.json`` of the re-thresholded set: its thresholds and id, the same ladder, its parent."""
    dropped = ("labelset_id", "rethresholded_from", "parent_labelset_id", "round", "derived", "ladder_available")
    new = {k: v for k, v in meta.items() if k not in dropped}
    new["threshold"] = float(chosen.global_threshold)
    new["class_thresholds"] = {n: float(t) for n, t in zip(meta["classes"], chosen.per_class, strict=True)}
    new["threshold_source"] = dict(chosen.source)
    if chosen.calibration is not None:
        new["calibration"] = chosen.calibration
        new["calibration_file"] = chosen.calibration_file
    new["parent_labelset_id"] = meta["labelset_id"]
    new["derived"] = {"by": "rethreshold", **chosen.derived}
    new["ladder_available"] = available_thresholds(new)
    new["labelset_id"] = labelset.labelset_id(new)
    return new


def default_destination(out: Path, labelset_id: str) -> Path:
    """Where a re-thresholded set goes when no folder is named: next to the source, ``<name>-<id prefix>``."""
    return out.parent / f"{out.name}-{labelset_id[:8]}"


def _luts(meta: dict[str, Any]) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(stored -> train id, train id -> stored) tables when labels hold dataset label values, else Nones."""
    if not meta.get("label_ids"):
        return None, None
    to_train = np.full(256, meta["ignore_index"], dtype=np.uint8)
    to_stored = np.zeros(256, dtype=np.uint8)
    for train_id, label_id in enumerate(meta["label_ids"]):
        to_train[label_id] = train_id
        to_stored[train_id] = label_id
    return to_train, to_stored


@dataclass(frozen=True)
class _Job:
    out: Path
    dest: Path
    meta: dict[str, Any]
    rungs: list[int]
    to_train: np.ndarray | None
    to_stored: np.ndarray | None

    @property
    def in_place(self) -> bool:
        return self.dest.resolve() == self.out.resolve()


def rethreshold(
    out: str | Path,
    request: ThresholdRequest,
    dest: str | Path | None = None,
    *,
    in_place: bool = False,
    overwrite: bool = False,
    verify: bool = True,
    on_image: Callable[[int], None] | None = None,
) -> RethresholdResult:
    """Re-threshold the label set in ``out`` as ``request`` says, into ``dest`` (default: a new folder next to
    it, see :func:`default_destination`) or, with ``in_place``, into ``out`` itself.

    An image whose label or confidence map is missing or damaged (checked against the manifest's checksums)
    becomes an error row naming the file, and the run goes on: every other image is done, every part and
    ``labelset.json`` written, so the result is a complete label set (``errors`` counts the error rows). With
    ``verify`` the result is checked like ``autolabel verify`` (without listing the inputs again) and what it
    finds is in ``problems``.
    """
    out = Path(out)
    meta = labelset.read_labelset(out)
    if not meta.get("confidence"):
        raise LabelSetError(f"{out}: was generated with --no-confidence; re-thresholding needs the confidence store")
    rows = labelset.read_manifest(out).to_pylist() if request.portion is not None else []
    chosen = choose_thresholds(meta, request, rows)
    rungs = class_rungs(meta, chosen.per_class)  # refuses values off the ladder (or below a format-1 floor)
    new_meta = rethresholded_meta(meta, chosen)
    dest = _destination(out, dest, in_place, new_meta["labelset_id"])
    to_train, to_stored = _luts(meta)
    job = _Job(out=out, dest=dest, meta=meta, rungs=rungs, to_train=to_train, to_stored=to_stored)
    if not job.in_place:
        labelset.prepare_output(dest, new_meta, overwrite)
        confidence.init_store(dest, meta["ladder"])
    images = errors = 0
    for part in labelset.part_paths(out):
        new_rows = []
        for row in labelset.read_part(part).to_pylist():
            if row["status"] == "ok":
                try:
                    row = _rethreshold_row(job, row)
                    images += 1
                except AutolabelError as exc:
                    log.warning("%s: %s", row["id"], exc)
                    row = _failed_row(job, row, str(exc))
                    errors += 1
                if on_image is not None:
                    on_image(1)
            new_rows.append(row)
        labelset.write_part(dest, new_rows)
    if job.in_place:
        labelset.write_labelset(out, new_meta)
    log.info("re-thresholded %d images into %s (%d errors)", images, dest, errors)
    result = RethresholdResult(
        labelset_id=new_meta["labelset_id"], images=images, out=dest, errors=errors, thresholds=chosen
    )
    if verify:
        result.problems = verify_labelset(dest, check_inputs=False).problems
    return result


def _destination(out: Path, dest: str | Path | None, in_place: bool, labelset_id: str) -> Path:
    if in_place:
        if dest is not None and Path(dest).resolve() != out.resolve():
            raise ConfigError("--in-place rewrites LABELSET itself; it takes no --out")
        return out
    chosen = Path(dest) if dest is not None else default_destination(out, labelset_id)
    if chosen.resolve() == out.resolve():
        raise ConfigError(f"--out {chosen}: that is LABELSET itself; give --in-place to rewrite it")
    return chosen


def _failed_row(job: _Job, row: dict[str, Any], message: str) -> dict:
    """The error row of an image that could not be re-thresholded. In place, its old files go (they hold the
    old thresholds, or are damaged), so that a rerun of ``generate`` at the new thresholds labels it afresh."""
    if job.in_place:
        remove_image_outputs(job.out, row["id"], bool(job.meta.get("label_ids")))
    return error_row(Sample(id=row["id"], image=Path(row["image"])), f"re-threshold: {message}", row["shard"])


def _rethreshold_row(job: _Job, row: dict[str, Any]) -> dict:
    meta = job.meta
    label_path = job.out / row["label"]
    intact = file_sha256(label_path) == row["label_sha256"]
    if not intact and not job.in_place:
        raise LabelSetError(f"{label_path}: label missing or changed since it was written (sha256 differs)")
    maps = confidence.load_maps(job.out, row["id"], expected=row.get("output_files"))
    if maps.classes is not None and intact:
        labels = confidence.apply_rungs(maps.classes, maps.codes, job.rungs, meta["ignore_index"])
    else:  # format 1 (the classes are the label's), or a label to compare the result with
        old = read_label(label_path, lut=job.to_train)
        source = old if maps.classes is None else maps.classes
        labels = confidence.apply_rungs(source, maps.codes, job.rungs, meta["ignore_index"])
        if not intact and not np.array_equal(labels, old):
            # in place, a label already at the new thresholds (an interrupted earlier attempt rewrote it before
            # its part) is unchanged by re-thresholding; any other difference from the manifest is damage
            raise LabelSetError(f"{label_path}: label changed since it was written (sha256 differs from the manifest)")
    settings = WriteSettings(
        out=job.dest,
        num_classes=meta["num_classes"],
        shard=row["shard"],
        confidence=False,  # the store is copied as it is (below), or stays where it is
        centroid_tile=meta.get("centroid_tile", 1024),
        compress_level=meta.get("png_compress_level", 9),
        train_to_label=job.to_stored,
        ignore_index=meta["ignore_index"],
    )
    sample = Sample(id=row["id"], image=Path(row["image"]))
    fingerprint = {k: row.get(k) for k in FINGERPRINT_KEYS}  # the same input as the source row's
    # the teacher's ranking signals and the label's source belong to the image, not to the threshold
    signals = {name: row.get(name) for name in labelset.SIGNAL_COLUMNS}
    new = finalise_image(
        settings,
        sample,
        labels,
        maps.codes,
        row["mean_confidence"],
        {},
        row["seconds"],
        fingerprint,
        histogram=row.get("confidence_histogram"),  # the store is unchanged, so is its histogram
        signals=signals,
        source=row.get("source") or "teacher",
    )
    if job.in_place:  # the confidence array (and any attention map) stays as it is
        new["output_files"] = row.get("output_files")
    else:
        new["output_files"] = _copy_store(job, row["id"])
    return new


def _copy_store(job: _Job, image_id: str) -> list[dict[str, str]]:
    """Copy an image's array (checked against its checksums when it was loaded) and list its files."""
    return file_entries(confidence.copy_array(job.out, job.dest, image_id))
