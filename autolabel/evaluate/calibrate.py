"""``autolabel calibrate``: how far to trust the teacher's probabilities, and the thresholds that reach a precision.

The teacher runs exactly as ``generate`` runs it (:func:`autolabel.models.predict.predict_images` with the same
``[generate]`` scales, flip, tiling, precision and batch size, a short batch padded as generate pads it) over
labelled images. From their labelled pixels a deterministic sample is kept (at most ``max_pixels``, shared
between the images in proportion to their labelled pixels, each image's drawn with its own seeded generator):
the logits and the reference class of each. On that sample:

- the temperature ``T`` minimising the negative log-likelihood of ``softmax(logits / T)`` (a scalar, or with
  ``per_class_temperature`` one per predicted class, which keeps every argmax; a class with fewer than
  ``min_pixels`` sampled pixels keeps the scalar). NLL is convex in ``1 / T``; its derivative is increasing, and
  bisection on its sign over ``T`` in [1e-3, 1e3] finds the minimum to float precision;
- the expected calibration error over 15 equal-width bins of the max probability, before and after, with the
  reliability-diagram data (per bin: pixels, mean confidence, accuracy);
- per predicted class, at every threshold ``t`` of 0.00, 0.01, ..., 0.99: the precision of the pixels kept
  (``p > t``, the comparison generate makes) and their coverage (kept share of the pixels predicted as the
  class), before and after calibration;
- per class, the lowest threshold whose precision reaches ``target_precision``, on the calibrated and on the
  uncalibrated probability. A threshold counts only when it keeps at least ``min_pixels`` pixels; a class with
  fewer pixels than that predicted at all takes the global threshold (the lowest reaching the target over all
  classes pooled; listed under ``fallback_classes``); a class that never reaches the target takes the
  threshold of its highest precision (``unreached_classes``).

Everything goes into ``calibration.json`` with the teacher's sha256, the data and its split
(:mod:`autolabel.labelset.calibration` reads it).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autolabel.classes import ClassSet
from autolabel.config import DataConfig, GenerateConfig, to_dict
from autolabel.data.datasets import Sample
from autolabel.data.io import read_image, read_label
from autolabel.data.loading import check_same_size
from autolabel.errors import CheckpointError, DataError
from autolabel.labelset.calibration import CALIBRATION_FORMAT, CALIBRATION_VERSION
from autolabel.models.checkpoint import load_checkpoint
from autolabel.models.device import precision_name, resolve_device, resolve_precision
from autolabel.models.predict import apply_temperature, predict_images, prepare_for_inference

log = logging.getLogger(__name__)

CURVE_STEP = 0.01
CURVE_THRESHOLDS = tuple(round(i * CURVE_STEP, 2) for i in range(100))  # 0.00 ... 0.99
ECE_BINS = 15
T_RANGE = (1e-3, 1e3)
_CHUNK = 262_144  # pixels per softmax when scanning the sample (bounds the temporary memory)


@dataclass(frozen=True)
class CalibrationSettings:
    """What ``calibrate`` measures and chooses (the teacher's run settings are ``[generate]``'s)."""

    target_precision: float = 0.95
    per_class_temperature: bool = False
    max_pixels: int = 1_000_000  # the sample: ~76 MB of float32 logits at 19 classes
    min_pixels: int = 500  # sampled pixels a precision figure needs to count
    seed: int = 0


@dataclass
class PixelSample:
    """Logits and reference classes of the sampled labelled pixels."""

    logits: torch.Tensor  # (N, C) float32
    labels: torch.Tensor  # (N,) int64
    images: int
    labelled_pixels: int  # labelled pixels of all images (the sample is drawn from these)


# ---------------------------------------------------------------------------------------------------------
# the sample


def labelled_counts(
    samples: Sequence[Sample], lut: np.ndarray | None, num_classes: int, max_pixels: int | None
) -> list[int]:
    """Labelled (reference class < C) pixels per image."""
    counts = []
    for sample in samples:
        assert sample.label is not None  # callers pass labelled samples only
        label = read_label(sample.label, lut, max_pixels)
        counts.append(int((label < num_classes).sum()))
    return counts


def quotas(counts: Sequence[int], max_pixels: int) -> list[int]:
    """Pixels to sample per image: all of them when the total fits, else shares in proportion (floors, so the
    total never exceeds ``max_pixels``)."""
    total = sum(counts)
    if total <= max_pixels:
        return list(counts)
    return [int(n * max_pixels // total) for n in counts]


def sample_pixels(
    model: torch.nn.Module,
    samples: Sequence[Sample],
    classes: ClassSet,
    *,
    settings: GenerateConfig,
    data: DataConfig,
    device: torch.device,
    precision: torch.dtype | None,
    lut: np.ndarray | None,
    max_pixels: int,
    seed: int = 0,
    on_image: Callable[[], None] | None = None,
) -> PixelSample:
    """Run the teacher as ``generate`` does over ``samples`` and keep the logits of a deterministic sample of
    their labelled pixels (see the module docstring)."""
    counts = labelled_counts(samples, lut, classes.num_classes, data.max_image_pixels)
    if sum(counts) == 0:
        raise DataError("none of the labelled images has a pixel of one of the classes: nothing to calibrate on")
    wanted = quotas(counts, max_pixels)
    logits_parts: list[torch.Tensor] = []
    label_parts: list[torch.Tensor] = []
    batch: list[tuple[int, np.ndarray, np.ndarray]] = []

    def run() -> None:
        images = [image for _, image, _ in batch]
        images += [images[-1]] * (settings.batch_size - len(images))  # as generate pads: same kernels, same bits
        pred = predict_images(
            model, np.stack(images), settings, device=device, mean=data.mean, std=data.std, precision=precision,
            keys={"pred"},
        )["pred"]  # fmt: skip
        for b, (index, _, label) in enumerate(batch):
            flat_label = torch.from_numpy(label.astype(np.int64)).flatten()  # (H*W,)
            chosen = np.flatnonzero(label.ravel() < classes.num_classes)
            if wanted[index] < chosen.size:
                rng = np.random.default_rng([seed, index])
                chosen = np.sort(rng.choice(chosen, size=wanted[index], replace=False))
            pick = torch.from_numpy(chosen)
            logits = pred[b].flatten(1)[:, pick.to(pred.device)].T.float().cpu()  # (n, C)
            logits_parts.append(logits)
            label_parts.append(flat_label[pick])
            if on_image is not None:
                on_image()
        batch.clear()

    for index, sample in enumerate(samples):
        image = read_image(sample.image, data.max_image_pixels, exif_transpose=data.exif_transpose)
        assert sample.label is not None
        label = read_label(sample.label, lut, data.max_image_pixels)
        check_same_size(image, label, sample.label)
        if batch and (len(batch) == settings.batch_size or batch[0][1].shape != image.shape):
            run()
        batch.append((index, image, label))
    if batch:
        run()
    return PixelSample(
        logits=torch.cat(logits_parts),
        labels=torch.cat(label_parts),
        images=len(samples),
        labelled_pixels=sum(counts),
    )


# ---------------------------------------------------------------------------------------------------------
# temperature


def nll(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``labels`` under ``softmax(logits / temperature)`` (float64)."""
    total = 0.0
    for start in range(0, logits.shape[0], _CHUNK):
        z = logits[start : start + _CHUNK].double() / temperature
        y = labels[start : start + _CHUNK]
        total += float((torch.logsumexp(z, dim=1) - z.gather(1, y[:, None])[:, 0]).sum())
    return total / max(logits.shape[0], 1)


def _nll_slope(logits: torch.Tensor, labels: torch.Tensor, beta: float) -> float:
    """d NLL / d beta at ``beta = 1 / T``: mean of ``E_p[z] - z_y`` (increasing in beta: NLL is convex)."""
    total = 0.0
    for start in range(0, logits.shape[0], _CHUNK):
        z = logits[start : start + _CHUNK].double()
        y = labels[start : start + _CHUNK]
        p = torch.softmax(beta * z, dim=1)
        total += float(((p * z).sum(1) - z.gather(1, y[:, None])[:, 0]).sum())
    return total / max(logits.shape[0], 1)


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, iterations: int = 60) -> float:
    """The scalar ``T`` minimising :func:`nll`, by bisection on the slope's sign in log space over ``T_RANGE``
    (clamped at the ends when the minimum lies outside, with a warning)."""
    if logits.shape[0] == 0:
        return 1.0
    lo, hi = math.log(1.0 / T_RANGE[1]), math.log(1.0 / T_RANGE[0])  # log beta
    if _nll_slope(logits, labels, math.exp(hi)) <= 0:
        log.warning("NLL still falls at T = %g (the sample is separable): clamped there", T_RANGE[0])
        return T_RANGE[0]
    if _nll_slope(logits, labels, math.exp(lo)) >= 0:
        log.warning("NLL still falls at T = %g: clamped there", T_RANGE[1])
        return T_RANGE[1]
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        if _nll_slope(logits, labels, math.exp(mid)) > 0:
            hi = mid
        else:
            lo = mid
    return 1.0 / math.exp(0.5 * (lo + hi))


def fit_class_temperatures(
    logits: torch.Tensor, labels: torch.Tensor, scalar: float, min_pixels: int
) -> tuple[list[float], list[int]]:
    """One temperature per predicted class (fit on the pixels whose argmax it is); classes with fewer than
    ``min_pixels`` of them keep ``scalar``. Returns the temperatures and the classes that kept the scalar."""
    predicted = logits.argmax(1)
    temperatures, kept_scalar = [], []
    for c in range(logits.shape[1]):
        mask = predicted == c
        if int(mask.sum()) < min_pixels:
            temperatures.append(scalar)
            kept_scalar.append(c)
        else:
            temperatures.append(fit_temperature(logits[mask], labels[mask]))
    return temperatures, kept_scalar


# ---------------------------------------------------------------------------------------------------------
# measures


def max_probabilities(
    logits: torch.Tensor, temperature: float | Sequence[float] | None
) -> tuple[np.ndarray, np.ndarray]:
    """(max probability float32, argmax int64) of every sampled pixel under ``temperature`` (as generate)."""
    probs, preds = [], []
    for start in range(0, logits.shape[0], _CHUNK):
        p, k = torch.softmax(apply_temperature(logits[start : start + _CHUNK].float(), temperature), dim=1).max(1)
        probs.append(p)
        preds.append(k)
    return torch.cat(probs).numpy(), torch.cat(preds).numpy()


def expected_calibration_error(
    confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS
) -> tuple[float, list[dict[str, Any]]]:
    """ECE over ``bins`` equal-width bins of the confidence (bin ``i``: ``i/bins < p <= (i+1)/bins``, p = 0 in
    the first): the pixel-weighted mean of ``|accuracy - mean confidence|``; and each bin's figures."""
    index = np.clip(np.ceil(confidence.astype(np.float64) * bins).astype(np.int64) - 1, 0, bins - 1)
    total = max(confidence.size, 1)
    ece, table = 0.0, []
    for b in range(bins):
        mask = index == b
        n = int(mask.sum())
        conf = float(confidence[mask].mean()) if n else None
        acc = float(correct[mask].mean()) if n else None
        if n:
            ece += n / total * abs(acc - conf)  # type: ignore[operator]
        table.append({"lo": b / bins, "hi": (b + 1) / bins, "pixels": n, "confidence": conf, "accuracy": acc})
    return ece, table


def class_curves(
    confidence: np.ndarray, predicted: np.ndarray, labels: np.ndarray, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """(C, T) pixels kept (``p > t``) and correct kept ones, per predicted class and curve threshold."""
    grid = torch.tensor(CURVE_THRESHOLDS, dtype=torch.float32)
    codes = torch.bucketize(torch.from_numpy(confidence), grid, right=False).numpy()  # #thresholds below p
    levels = len(CURVE_THRESHOLDS) + 1
    flat = predicted.astype(np.int64) * levels + codes
    every = np.bincount(flat, minlength=num_classes * levels).reshape(num_classes, levels)
    right = np.bincount(flat[predicted == labels], minlength=num_classes * levels).reshape(num_classes, levels)
    # kept at threshold j: codes j+1 ... levels-1 (a reversed cumulative sum)
    kept = np.cumsum(every[:, ::-1], axis=1)[:, ::-1][:, 1:]
    correct = np.cumsum(right[:, ::-1], axis=1)[:, ::-1][:, 1:]
    return kept, correct


@dataclass(frozen=True)
class ThresholdChoice:
    per_class: list[float]
    global_threshold: float
    fallback: list[str]
    unreached: list[str]


def choose_class_thresholds(
    kept: np.ndarray, correct: np.ndarray, names: Sequence[str], target: float, min_pixels: int
) -> ThresholdChoice:
    """Per class the lowest curve threshold whose precision reaches ``target`` with at least ``min_pixels``
    kept (see the module docstring for the fallbacks)."""
    pooled = _lowest_reaching(kept.sum(0), correct.sum(0), target, min_pixels)
    if pooled is None:
        pooled = _best_precision(kept.sum(0), correct.sum(0), min_pixels)
    global_threshold = CURVE_THRESHOLDS[pooled]
    per_class, fallback, unreached = [], [], []
    for c, name in enumerate(names):
        if kept[c, 0] < min_pixels:
            per_class.append(global_threshold)
            fallback.append(name)
            continue
        j = _lowest_reaching(kept[c], correct[c], target, min_pixels)
        if j is None:
            unreached.append(name)
            j = _best_precision(kept[c], correct[c], min_pixels)
        per_class.append(CURVE_THRESHOLDS[j])
    return ThresholdChoice(per_class, global_threshold, fallback, unreached)


def _lowest_reaching(kept: np.ndarray, correct: np.ndarray, target: float, min_pixels: int) -> int | None:
    for j in range(len(kept)):
        if kept[j] >= max(min_pixels, 1) and correct[j] >= target * kept[j]:
            return j
    return None


def _best_precision(kept: np.ndarray, correct: np.ndarray, min_pixels: int) -> int:
    """The threshold of the highest precision among those keeping at least ``min_pixels`` (the first one when
    none does); ties go to the lowest threshold."""
    usable = [j for j in range(len(kept)) if kept[j] >= max(min_pixels, 1)]
    if not usable:
        return 0
    return max(usable, key=lambda j: (correct[j] / kept[j], -j))


def _curves_json(kept: np.ndarray, correct: np.ndarray, names: Sequence[str]) -> dict[str, Any]:
    total = np.maximum(kept[:, :1], 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(kept > 0, correct / np.maximum(kept, 1), np.nan)
    return {
        name: {
            "pixels": int(kept[c, 0]),
            "precision": [None if np.isnan(v) else round(float(v), 6) for v in precision[c]],
            "coverage": [round(float(v), 6) for v in kept[c] / total[c]],
        }
        for c, name in enumerate(names)
    }


# ---------------------------------------------------------------------------------------------------------
# the whole measurement


def calibrate(
    teacher: Path,
    samples: Sequence[Sample],
    classes: ClassSet,
    *,
    generate: GenerateConfig,
    data: DataConfig,
    settings: CalibrationSettings = CalibrationSettings(),
    labels_are_train_ids: bool = False,
    data_name: str = "",
    split: str | None = None,
    on_image: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """The content of ``calibration.json`` for ``teacher`` on the labelled ``samples`` (module docstring)."""
    loaded = load_checkpoint(teacher, device="cpu", expected_num_classes=classes.num_classes)
    if tuple(loaded.class_names) != tuple(classes.names):
        raise CheckpointError(
            f"{teacher}: teacher classes {list(loaded.class_names)} differ from the configured classes "
            f"{list(classes.names)}"
        )
    device = resolve_device(generate.device)
    precision = resolve_precision(generate.precision, device)
    model = prepare_for_inference(loaded.model, device)
    lut = None if labels_are_train_ids else classes.label_to_train_lut()
    pixels = sample_pixels(
        model, samples, classes, settings=generate, data=data, device=device, precision=precision, lut=lut,
        max_pixels=settings.max_pixels, seed=settings.seed, on_image=on_image,
    )  # fmt: skip
    return summarise(pixels, classes, settings, teacher_sha256=loaded.sha256) | {
        "teacher": str(teacher),
        "data": data_name,
        "split": split,
        "run": {**_run_settings(generate), "precision": precision_name(precision)},
    }


def _run_settings(generate: GenerateConfig) -> dict[str, Any]:
    raw = to_dict(generate)
    return {k: raw[k] for k in ("scales", "flip", "tile_size", "tile_overlap", "batch_size")}


def summarise(
    pixels: PixelSample, classes: ClassSet, settings: CalibrationSettings, *, teacher_sha256: str
) -> dict[str, Any]:
    """Temperature, ECE, curves and thresholds from a pixel sample (the JSON document, less the run info)."""
    names = list(classes.names)
    labels = pixels.labels.numpy()
    scalar = fit_temperature(pixels.logits, pixels.labels)
    temperature: float | list[float] = scalar
    kept_scalar: list[int] = []
    if settings.per_class_temperature:
        temperature, kept_scalar = fit_class_temperatures(pixels.logits, pixels.labels, scalar, settings.min_pixels)
    before_p, before_k = max_probabilities(pixels.logits, None)
    after_p, after_k = max_probabilities(pixels.logits, temperature)
    ece_before, bins_before = expected_calibration_error(before_p, before_k == labels)
    ece_after, bins_after = expected_calibration_error(after_p, after_k == labels)
    curves_before = class_curves(before_p, before_k, labels, classes.num_classes)
    curves_after = class_curves(after_p, after_k, labels, classes.num_classes)
    raw = choose_class_thresholds(*curves_before, names, settings.target_precision, settings.min_pixels)
    calibrated = choose_class_thresholds(*curves_after, names, settings.target_precision, settings.min_pixels)
    log.info("temperature %s: ECE %.4f -> %.4f", temperature, ece_before, ece_after)
    return {
        "format": CALIBRATION_FORMAT,
        "version": CALIBRATION_VERSION,
        "teacher_sha256": teacher_sha256,
        "classes": names,
        "images": pixels.images,
        "sample": {
            "pixels": int(pixels.labels.numel()),
            "labelled_pixels": pixels.labelled_pixels,
            "max_pixels": settings.max_pixels,
            "seed": settings.seed,
            "how": "per image a uniform draw of its labelled pixels without replacement, in proportion to its "
            "labelled pixels, generator seeded with (seed, image index); all of them when they fit",
        },
        "temperature": temperature,
        "temperature_mode": "per-class" if settings.per_class_temperature else "scalar",
        "classes_with_the_scalar_temperature": [names[c] for c in kept_scalar],
        "nll": {"before": nll(pixels.logits, pixels.labels), "after": _nll_after(pixels, temperature)},
        "ece": {"bins": ECE_BINS, "before": ece_before, "after": ece_after},
        "reliability": {"before": bins_before, "after": bins_after},
        "target_precision": settings.target_precision,
        "min_pixels": settings.min_pixels,
        "curves": {
            "thresholds": list(CURVE_THRESHOLDS),
            "before": _curves_json(*curves_before, names),
            "after": _curves_json(*curves_after, names),
        },
        "thresholds": {
            "calibrated": {
                "global": calibrated.global_threshold,
                "classes": dict(zip(names, calibrated.per_class, strict=True)),
            },
            "uncalibrated": {"global": raw.global_threshold, "classes": dict(zip(names, raw.per_class, strict=True))},
            "fallback_classes": calibrated.fallback,
            "unreached_classes": calibrated.unreached,
            "uncalibrated_fallback_classes": raw.fallback,
            "uncalibrated_unreached_classes": raw.unreached,
        },
    }


def _nll_after(pixels: PixelSample, temperature: float | list[float]) -> float:
    if isinstance(temperature, float):
        return nll(pixels.logits, pixels.labels, temperature)
    scaled = torch.cat(
        [apply_temperature(pixels.logits[s : s + _CHUNK], temperature) for s in range(0, len(pixels.logits), _CHUNK)]
    )
    return nll(scaled, pixels.labels)
