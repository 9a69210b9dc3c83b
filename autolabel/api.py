"""The public Python API: one function per command, what the ``autolabel`` CLI itself calls.

Labelling a folder from Python::

    import autolabel

    cfg = autolabel.load_config("pipelines/demo.toml")
    result = autolabel.generate_labels("teacher.pt", "cityscapes:/data/cs:train_extra", "/data/labels", config=cfg)
    print(result.ok, "labelled,", len(result.errors), "errors")

Every function checks what it is given like the config loader does (a wrong value raises
:class:`~autolabel.errors.AutolabelError` naming the argument), and every long one takes progress callbacks:
``on_total(n)`` once the amount of work is known, ``on_image(n)`` as it is done.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa

from autolabel import config as config_module
from autolabel import labelset
from autolabel.classes import ClassSet, class_set_from_config
from autolabel.config import PipelineConfig
from autolabel.data.datasets import Sample
from autolabel.data.io import image_size
from autolabel.data.sources import Source, index_by_name, lookup, parse_source, require_labels, train_data
from autolabel.errors import ConfigError, DataError, OutputError
from autolabel.evaluate.audit import CITYSCAPES_REFERENCES, audit_labelset
from autolabel.evaluate.calibrate import CalibrationSettings, calibrate
from autolabel.evaluate.checkpoint import evaluate_checkpoint as _evaluate_checkpoint
from autolabel.evaluate.predictions import LABEL_IDS_DIR, prediction_folder
from autolabel.evaluate.predictions import evaluate_predictions as _evaluate_predictions
from autolabel.fs import output_dir_problem, write_json
from autolabel.generate.planner import LabelPlan, auto_tiling
from autolabel.generate.planner import plan_labels as plan_generate
from autolabel.generate.runner import GenerateJob, GenerateResult, run_generate
from autolabel.generate.sharding import Shard, parse_shard, shard_from_env
from autolabel.labelset.calibration import CALIBRATION_FILE, parse_class_thresholds
from autolabel.labelset.diff import diff_labelsets as _diff_labelsets
from autolabel.labelset.rethreshold import RethresholdResult, ThresholdRequest, rethreshold
from autolabel.labelset.verify import VerifyReport
from autolabel.labelset.verify import verify_labelset as _verify_labelset
from autolabel.metrics import SegMetrics
from autolabel.models.device import parse_precision, resolve_device
from autolabel.models.evaluation import EvalSettings
from autolabel.review.export import ExportResult, export_review
from autolabel.review.importing import ImportResult, import_review
from autolabel.review.names import DEFAULT_BY
from autolabel.train.loop import FitResult, LossParts, fit
from autolabel.train.state import CACHE, LAST, RUN_FILES, Position
from autolabel.workflows.rounds import City, RoundsSettings, parse_stop_rule
from autolabel.workflows.rounds import run_rounds as _run_rounds

log = logging.getLogger(__name__)

__all__ = [
    "audit_labels",
    "calibrate_teacher",
    "diff_labelsets",
    "evaluate_checkpoint",
    "evaluate_predictions",
    "generate_labels",
    "load_config",
    "plan_labels",
    "read_labelset",
    "read_manifest",
    "rethreshold_labels",
    "review_export",
    "review_import",
    "run_rounds",
    "train_student",
    "train_teacher",
    "verify_labels",
]

CountFn = Callable[[int], None]
Values = Literal["train-ids", "label-ids"]

# The smallest side, in pixels, that an input may have at any inference scale. The network's stem is two
# stride-2 convolutions, so a side of 8 leaves 2 feature pixels per side; below that a scale's prediction is
# mostly padding and its share of the fused logits only degrades the result, and below 1 px the resize fails.
# Every setting the project ships keeps to it (0.25 of a 128-px-high city image is 32 px, 0.5 of the tests'
# 32-px images 16 px).
MIN_SCALED_SIDE = 8
_SIZE_PROBE = 16  # images whose headers the scale check reads (datasets rarely mix sizes; this costs ~ms)


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> PipelineConfig:
    """The checked pipeline config in ``path`` (defaults when None) with ``section.key=value`` overrides.

    Args:
        path: a pipeline TOML file (see ``pipelines/``), or None for the defaults.
        overrides: ``"train.lr=0.01"``-style overrides, checked like the file's own values.
    """
    return config_module.load_config(path, overrides)


def _config(config: PipelineConfig | str | Path | None) -> PipelineConfig:
    if isinstance(config, PipelineConfig):
        return config
    return load_config(config)


def _source(data: str | Source, cfg: PipelineConfig, split: str, flag: str = "--data") -> Source:
    return data if isinstance(data, Source) else parse_source(data, flag=flag, config=cfg.data, split=split)


def check_scales(
    samples: Sequence[Sample], scales: Sequence[float], tile_size: int = 0, *, key: str = "scales", exif: bool = True
) -> None:
    """A :class:`ConfigError` naming ``key`` when the smallest scale makes an input (the first images'
    sizes, or the sliding window's) smaller than :data:`MIN_SCALED_SIDE` pixels on a side.

    Called before anything is written, so a nonsensical scale never leaves a half-made output.
    """
    if not samples or not scales:
        return
    low, high = min(scales), max(scales)
    window = max(1, int(tile_size / high)) if tile_size else None  # models.predict: input side of one window
    for sample in samples[:_SIZE_PROBE]:
        try:
            width, height = image_size(sample.image, exif_transpose=exif)
        except DataError:
            continue  # an unreadable image becomes its own error row later
        side = min(width, height) if window is None else min(width, height, window)
        if int(side * low) < MIN_SCALED_SIDE:
            usable = MIN_SCALED_SIDE / side
            where = f"a {width}x{height} image ({sample.image})"
            if window is not None and window < min(width, height):
                where = f"the {window}-px sliding window of tile size {tile_size}"
            raise ConfigError(
                f"{key}: {low:g} makes {where} {int(side * low)} px on its short side; every scale must "
                f"leave at least {MIN_SCALED_SIDE} px, so the smallest usable scale here is {usable:.3g}"
            )


def generate_labels(
    teacher: str | Path,
    data: str | Source,
    out: str | Path,
    *,
    config: PipelineConfig | str | Path | None = None,
    classes: Literal["config", "teacher"] | None = None,
    shard: str | Shard | None = None,
    limit: int | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    overwrite: bool = False,
    fail_fast: bool = False,
    recheck_inputs: bool = False,
    wait: bool = False,
    on_total: CountFn | None = None,
    on_image: CountFn | None = None,
    **settings: Any,
) -> GenerateResult:
    """Label the images ``data`` names with ``teacher`` into the label set ``out`` (resumable).

    Args:
        teacher: an autolabel checkpoint (``train-teacher``, ``import-checkpoint``).
        data: a dataset spec (``cityscapes:ROOT:SPLIT``, ``folder:IMAGES``, ..., see
            :mod:`autolabel.data.sources`) or a :class:`~autolabel.data.sources.Source`.
        out: the label-set folder (created; a different label set there is refused unless ``overwrite``).
        config: a pipeline config or its path (default: the defaults).
        classes: whose class list the labels use: ``"config"`` (the teacher's must then match it) or
            ``"teacher"`` (the checkpoint's own); default ``"config"`` when a config is given, else ``"teacher"``.
        shard: ``"I/N"``; default: the launcher's variables (SLURM, torchrun), else everything.
        limit: label at most this many images of the shard.
        workers: run on a local Dask cluster of this many processes (0: one per GPU).
        scheduler: run on the existing Dask cluster at this address.
        overwrite: replace a different label set in ``out``.
        fail_fast: stop at the first unreadable image.
        recheck_inputs: hash every input again (not only those whose size or mtime changed) and label again the
            images whose rows have no input fingerprint (written by an older version).
        wait: when another job holds this shard's lock, wait for it instead of refusing.
        on_total: called once with the number of images in this shard.
        on_image: called with the number of images finished, as they finish.
        settings: ``[generate]`` values (``threshold=0.9``, ``scales=(0.5, 1.0)``, ...), checked like the config.
    """
    job, samples, class_set = _generate_job(
        teacher, data, out, config, classes, shard, limit, overwrite=overwrite, fail_fast=fail_fast, settings=settings
    )
    job = dataclasses.replace(job, recheck_inputs=recheck_inputs, wait=wait)
    # with a memory budget and tile_size 0 the planner picks the tiling first (here, on this process's device)
    job, teacher_model = auto_tiling(job, samples, class_set)
    if on_total is not None:
        on_total(_shard_size(len(samples), job.shard, limit))
    if workers is not None or scheduler is not None:
        from autolabel.generate.dask_runner import run_generate_dask  # dask is heavy: only when asked for

        return run_generate_dask(job, samples, class_set, workers=workers or 0, scheduler=scheduler, on_image=on_image)
    return run_generate(job, samples, class_set, on_image=on_image, teacher=teacher_model)


def plan_labels(
    teacher: str | Path,
    data: str | Source,
    out: str | Path,
    *,
    config: PipelineConfig | str | Path | None = None,
    classes: Literal["config", "teacher"] | None = None,
    shard: str | Shard | None = None,
    limit: int | None = None,
    devices: int | None = None,
    **settings: Any,
) -> LabelPlan:
    """What :func:`generate_labels` with the same arguments would do, with the tiling it would choose and
    the time, peak memory and output size predicted from a few real images; writes nothing.

    Args:
        teacher, data, out, config, classes, shard, limit, settings: as for :func:`generate_labels`.
        devices: how many devices the shards run on, for the all-shards wall time (default: the shard count).
    """
    job, samples, class_set = _generate_job(teacher, data, out, config, classes, shard, limit, settings=settings)
    return plan_generate(job, samples, class_set, devices=devices)


def _generate_job(
    teacher: str | Path,
    data: str | Source,
    out: str | Path,
    config: PipelineConfig | str | Path | None,
    classes: Literal["config", "teacher"] | None,
    shard: str | Shard | None,
    limit: int | None,
    *,
    overwrite: bool = False,
    fail_fast: bool = False,
    settings: dict[str, Any],
) -> tuple[GenerateJob, list[Sample], ClassSet | None]:
    """The job, its inputs and the class set that :func:`generate_labels` and :func:`plan_labels` run."""
    cfg = _config(config)
    generate = config_module.replace(cfg.generate, **settings) if settings else cfg.generate
    source = _source(data, cfg, generate.split)
    out = Path(out).resolve()
    samples = source.discover(exclude=out)
    check_scales(samples, generate.scales, generate.tile_size, key="generate.scales", exif=cfg.data.exif_transpose)
    if isinstance(shard, str):
        shard = parse_shard(shard)
    job = GenerateJob(
        teacher=Path(teacher),
        out=out,
        generate=generate,
        data=cfg.data,
        shard=shard or shard_from_env(os.environ) or Shard(),
        limit=limit,
        fail_fast=fail_fast,
        overwrite=overwrite,
        source=source,
    )
    use_config = classes == "config" or (classes is None and config is not None)
    return job, samples, class_set_from_config(cfg.classes) if use_config else None


def _shard_size(total: int, shard: Shard, limit: int | None) -> int:
    """About how many images a shard holds (exact sizes need hashing every id; this is close and cheap)."""
    size = -(-total // shard.count)
    return min(size, limit) if limit is not None else size


def _train(
    config: PipelineConfig | str | Path,
    *,
    student: bool,
    labels: Sequence[str | Path],
    data: str | Source | None,
    out: str | Path | None,
    resume: bool,
    overwrite: bool,
    on_epoch_start: Callable[[int, int], None] | None,
    on_step: Callable[[Position, LossParts], None] | None,
    on_validate: Callable[[int, SegMetrics], None] | None,
) -> FitResult:
    cfg = _config(config)
    if data is not None:
        source = _source(data, cfg, cfg.data.train_split)
        cfg = config_module.replace(cfg, data=train_data(source, cfg.data))
    if out is not None:
        cfg = config_module.replace(cfg, train=config_module.replace(cfg.train, out_dir=Path(out).resolve()))
    run_dir = Path(cfg.train.out_dir)
    check_output_dir(run_dir, "train.out_dir")
    if student:
        _check_student(cfg, labels)
    before = _run_dir_state(run_dir)
    try:
        return fit(
            cfg,
            student=student,
            labels=[Path(p) for p in labels],
            resume=resume,
            overwrite=overwrite,
            on_step=on_step,
            on_epoch_start=on_epoch_start,
            on_validate=on_validate,
        )
    except BaseException:
        _undo_failed_start(run_dir, before)
        raise


def check_output_dir(path: Path, key: str) -> None:
    """An :class:`OutputError` naming ``key`` when ``path`` cannot be an output folder (a file is in the way,
    or nothing may be written where it would go); checked before any work starts."""
    problem = output_dir_problem(path)
    if problem is not None:
        raise OutputError(f"{key}: {path} {problem}")


def _check_student(cfg: PipelineConfig, labels: Sequence[str | Path]) -> None:
    """Refuse label sets that are not label sets before anything is written; warn about a schedule in which
    the auto labels are never dropped."""
    for path in [Path(p) for p in labels] or list(cfg.student.labels):
        labelset.read_labelset(path)  # a LabelSetError naming the folder when it is not one
    drop, epochs = cfg.student.drop_auto_after_epoch, cfg.epochs(student=True)
    if drop is not None and epochs <= drop:
        log.warning(
            "student.drop_auto_after_epoch = %d but the student trains %s: no epoch drops the auto labels "
            "(lower student.drop_auto_after_epoch, or raise student.epochs)",
            drop,
            f"{epochs} epoch" + ("" if epochs == 1 else "s"),
        )


def _run_dir_state(run_dir: Path) -> tuple[bool, set[str]]:
    """Whether ``run_dir`` exists, and which of a run's files and folders are already in it."""
    if not run_dir.is_dir():
        return False, set()
    return True, {name for name in (*RUN_FILES, CACHE) if (run_dir / name).exists()}


def _undo_failed_start(run_dir: Path, before: tuple[bool, set[str]]) -> None:
    """A run that failed before its first checkpoint leaves its folder as it found it (no cache, no log), so
    the same command can simply be run again; a later failure keeps everything for ``--resume``."""
    if os.environ.get("RANK", "0") != "0" or (run_dir / LAST).exists():
        return
    existed, names = before
    if not existed:
        shutil.rmtree(run_dir, ignore_errors=True)
        return
    for name in (*RUN_FILES, CACHE):
        path = run_dir / name
        if name in names or not path.exists():
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def train_teacher(
    config: PipelineConfig | str | Path,
    *,
    data: str | Source | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    on_epoch_start: Callable[[int, int], None] | None = None,
    on_step: Callable[[Position, LossParts], None] | None = None,
    on_validate: Callable[[int, SegMetrics], None] | None = None,
) -> FitResult:
    """Train the teacher on the fine labels of the config's ``data.train_split``.

    Args:
        config: a pipeline config or its path.
        data: the fine-labelled training images as a dataset spec (``cityscapes:ROOT:SPLIT``,
            ``mapillary:ROOT:SPLIT``, ``list:FILE``, ``config[:SPLIT]``) or source; default: the config's
            ``[data]`` at ``data.train_split``. Validation reads ``data.val_split`` of the same dataset.
        out: the run folder (default ``train.out_dir``): ``last.pt``, ``best.pt``, ``log.jsonl``, ...
        resume: continue the run in ``out`` exactly where it stopped.
        overwrite: replace a previous run in ``out`` instead of refusing.
        on_epoch_start: ``(epoch, steps)`` at the start of every epoch (main process only).
        on_step: ``(position, loss parts)`` after every step (main process only); the parts are 0-dim tensors
            (``float()`` of one waits for the device) and ``"lr"`` a float.
        on_validate: ``(epochs done, metrics)`` after every validation (main process only).
    """
    return _train(
        config,
        student=False,
        labels=(),
        data=data,
        out=out,
        resume=resume,
        overwrite=overwrite,
        on_epoch_start=on_epoch_start,
        on_step=on_step,
        on_validate=on_validate,
    )


def train_student(
    config: PipelineConfig | str | Path,
    labels: Sequence[str | Path] = (),
    *,
    data: str | Source | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    on_epoch_start: Callable[[int, int], None] | None = None,
    on_step: Callable[[Position, LossParts], None] | None = None,
    on_validate: Callable[[int, SegMetrics], None] | None = None,
) -> FitResult:
    """Train a student on the fine labels plus auto-label sets.

    Args:
        config: a pipeline config or its path; ``[student]`` says how the sets are mixed in.
        labels: label-set folders written by :func:`generate_labels` (default ``student.labels``).
        data, out, resume, overwrite, on_epoch_start, on_step, on_validate: as for :func:`train_teacher`.
    """
    return _train(
        config,
        student=True,
        labels=labels,
        data=data,
        out=out,
        resume=resume,
        overwrite=overwrite,
        on_epoch_start=on_epoch_start,
        on_step=on_step,
        on_validate=on_validate,
    )


def evaluate_checkpoint(
    checkpoint: str | Path,
    data: str | Source,
    *,
    config: PipelineConfig | str | Path | None = None,
    scales: Sequence[float] | None = None,
    flip: bool = False,
    tile_size: int = 0,
    device: str = "auto",
    precision: str = "auto",
    values: Values = "label-ids",
    save_predictions: str | Path | None = None,
    official: bool = False,
    on_total: CountFn | None = None,
    on_image: CountFn | None = None,
) -> dict[str, Any]:
    """Per-class IoU and mIoU of a checkpoint on labelled images (what ``autolabel evaluate`` prints).

    Args:
        checkpoint: an autolabel checkpoint trained for the config's classes.
        data: a dataset spec or :class:`~autolabel.data.sources.Source` with labels (``config`` means the
            config's validation split).
        config: the pipeline config the checkpoint was trained with (classes, normalisation).
        scales: inference scales (default: the model's own).
        flip: average with the horizontally flipped prediction.
        tile_size: sliding-window size in pixels of the largest scaled input (0: whole images).
        device: ``auto``, ``cpu`` or ``cuda`` (under torchrun/srun: the GPU of the process's local rank).
        precision: ``fp32``, ``bf16``, ``fp16`` or ``auto`` (bf16 on GPUs that have it, else fp16 on CUDA;
            fp32 on the CPU): the autocast dtype of the forward; the argmax is taken in fp32.
        values: what the label files hold: ``label-ids`` (the dataset's, e.g. Cityscapes labelIds) or
            ``train-ids`` (0..C-1, 255 = ignore).
        save_predictions: write the predictions under this folder too (``trainIds/``, ``labelIds/``).
        official: also run the official Cityscapes script on the saved label-id predictions (needs
            ``save_predictions`` and Cityscapes ``gtFine`` labels); its scores go under ``"official"``.
        on_total, on_image: progress callbacks (images).
    """
    cfg = _config(config)
    samples = require_labels(_source(data, cfg, cfg.data.val_split).discover(), str(data))
    if tile_size < 0:
        raise ConfigError(f"tile_size: {tile_size} is out of range, expected a value in [0, inf]")
    if scales:
        check_scales(samples, scales, tile_size, exif=cfg.data.exif_transpose)
    if official and save_predictions is None:
        raise ConfigError("official: the official script reads saved predictions; give save_predictions too")
    settings = EvalSettings(
        scales=tuple(sorted(float(s) for s in scales)) if scales else (),
        flip=flip,
        tile_size=tile_size,
        mean=cfg.data.mean,
        std=cfg.data.std,
        max_pixels=cfg.data.max_image_pixels,
        precision=parse_precision(precision),
    )
    if on_total is not None:
        on_total(len(samples))
    payload = _evaluate_checkpoint(
        checkpoint,
        samples,
        class_set_from_config(cfg.classes),
        settings=settings,
        device=resolve_device(device),
        labels_are_train_ids=_train_ids(values, "values"),
        save_predictions=Path(save_predictions) if save_predictions is not None else None,
        on_image=(lambda: on_image(1)) if on_image is not None else None,
    )
    payload = {"data": data.spec() if isinstance(data, Source) else data, **payload}
    if official:
        payload["official"] = _official(Path(save_predictions) / LABEL_IDS_DIR, samples)  # type: ignore[arg-type]
    return payload


def evaluate_predictions(
    predictions: str | Path,
    data: str | Source,
    *,
    config: PipelineConfig | str | Path | None = None,
    values: Values = "label-ids",
    prediction_values: Values | None = None,
    official: bool = False,
    on_total: CountFn | None = None,
    on_image: CountFn | None = None,
) -> dict[str, Any]:
    """Per-class IoU and mIoU of a folder of prediction PNGs (any tool's) on labelled images, counted as
    :func:`evaluate_checkpoint` counts a model's predictions.

    Args:
        predictions: a folder of PNGs named by image id (``<id>.png``) or by Cityscapes name
            (``<city>_<seq>_<frame>*.png``), or a folder ``evaluate --save-predictions`` wrote.
        data: the labelled images (a dataset spec or source; ``config`` = the config's validation split).
        config: the pipeline config whose classes the predictions use.
        values: what the label files of ``data`` hold (``label-ids`` or ``train-ids``).
        prediction_values: what the predictions hold; default: ``train-ids`` for a folder
            ``--save-predictions`` wrote, else the same as ``values``.
        official: also run the official Cityscapes script (label-id predictions, Cityscapes ``gtFine``).
        on_total, on_image: progress callbacks (images).
    """
    cfg = _config(config)
    samples = require_labels(_source(data, cfg, cfg.data.val_split).discover(), str(data))
    _train_ids(values, "values")
    if prediction_values is not None:
        _train_ids(prediction_values, "prediction_values")
    folder = prediction_folder(predictions, prediction_values, values)
    if on_total is not None:
        on_total(len(samples))
    metrics = _evaluate_predictions(
        folder,
        samples,
        class_set_from_config(cfg.classes),
        labels_are_train_ids=values == "train-ids",
        max_pixels=cfg.data.max_image_pixels,
        on_image=(lambda: on_image(1)) if on_image is not None else None,
    )
    payload: dict[str, Any] = {
        "data": data.spec() if isinstance(data, Source) else data,
        "predictions": str(folder.root),
        "prediction_values": folder.values,
        "images": len(samples),
        **metrics.to_dict(),
    }
    if official:
        if folder.values != "label-ids":
            raise ConfigError(
                f"official: {folder.root} holds train ids; the official script reads dataset label ids "
                "(a labelIds/ folder, or prediction_values='label-ids')"
            )
        payload["official"] = _official(folder.root, samples)
    return payload


def _train_ids(values: str, name: str) -> bool:
    if values not in ("train-ids", "label-ids"):
        raise ConfigError(f"{name}: {values!r} is not one of 'train-ids', 'label-ids'")
    return values == "train-ids"


def _official(predictions: Path, samples: Sequence[Sample]) -> dict[str, Any]:
    from autolabel.evaluate.official import official_scores  # cityscapesscripts is optional

    labels = [Path(s.label) for s in samples if s.label is not None]
    wrong = [p for p in labels if not p.name.endswith("_gtFine_labelIds.png")]
    if wrong:
        raise ConfigError(
            f"official: the official Cityscapes script evaluates against *_gtFine_labelIds.png labels, not "
            f"{wrong[0].name} (give cityscapes:ROOT:SPLIT data)"
        )
    return official_scores(predictions, labels)


def audit_labels(
    labels: str | Path,
    data: str | Source = "gtFine",
    *,
    config: PipelineConfig | str | Path | None = None,
    values: Values = "label-ids",
    on_total: CountFn | None = None,
    on_image: CountFn | None = None,
) -> dict[str, Any]:
    """Compare a label set with human labels: per-class precision, recall, IoU, coverage, threshold sweep.

    Args:
        labels: a label-set folder.
        data: the human labels: ``gtFine`` / ``gtCoarse`` (Cityscapes, next to each image of the set), or a
            dataset spec / source with labels, matched to the set's images by id or Cityscapes name
            (``folder:IMAGES:LABELS``, ``cityscapes:ROOT:SPLIT``, ``config[:SPLIT]``, ...).
        config: the pipeline config whose classes the label set uses.
        values: what the reference label files hold (``label-ids`` or ``train-ids``).
        on_total, on_image: progress callbacks (images).
    """
    cfg = _config(config)
    classes: ClassSet = class_set_from_config(cfg.classes)
    reference_train_ids = _train_ids(values, "values")
    manifest = labelset.read_manifest(labels)
    reference: str | dict[str, Path] = data if isinstance(data, str) and data in CITYSCAPES_REFERENCES else {}
    if not isinstance(reference, str):
        index = index_by_name(_source(data, cfg, cfg.generate.split).discover())
        for row in manifest.to_pylist():
            found = lookup(index, row["id"])
            if found is not None and found.label is not None:
                reference[row["id"]] = Path(found.label)
        if not reference:
            raise DataError(f"{data}: none of its labelled images is one of the label set's {manifest.num_rows}")
    if on_total is not None:
        on_total(manifest.num_rows)
    return audit_labelset(
        labels,
        reference,
        classes,
        reference_train_ids=reference_train_ids,
        max_pixels=cfg.data.max_image_pixels,
        on_image=(lambda: on_image(1)) if on_image is not None else None,
        name=data.spec() if isinstance(data, Source) else str(data),
    )


def calibrate_teacher(
    teacher: str | Path,
    data: str | Source,
    out: str | Path,
    *,
    config: PipelineConfig | str | Path | None = None,
    target_precision: float = 0.95,
    per_class_temperature: bool = False,
    max_pixels: int = 1_000_000,
    min_pixels: int = 500,
    values: Values = "label-ids",
    on_total: CountFn | None = None,
    on_image: CountFn | None = None,
) -> dict[str, Any]:
    """Calibrate a teacher on labelled images and write ``OUT/calibration.json`` (returned as a dict).

    The teacher runs as ``generate`` runs it with ``config``'s ``[generate]`` (scales, flip, tiling, precision,
    batch size, device). See :mod:`autolabel.evaluate.calibrate` for what is measured and chosen.

    Args:
        teacher: the teacher checkpoint.
        data: labelled images: a dataset spec or source (``config`` means the config's validation split).
        out: folder to write ``calibration.json`` into (created).
        config: the pipeline config (classes, normalisation, ``[generate]``).
        target_precision: per-class thresholds are the lowest reaching this precision, in (0, 1].
        per_class_temperature: fit one temperature per predicted class instead of one scalar.
        max_pixels: labelled pixels sampled (deterministically) for the fit and the curves.
        min_pixels: sampled pixels a class (and a threshold) needs to count; fewer: the global threshold.
        values: what the label files hold (``label-ids`` or ``train-ids``).
        on_total, on_image: progress callbacks (images).
    """
    cfg = _config(config)
    if not 0.0 < target_precision <= 1.0:
        raise ConfigError(f"target_precision: {target_precision} is out of range, expected a value in (0, 1]")
    if max_pixels < 1 or min_pixels < 1:
        raise ConfigError(f"max_pixels ({max_pixels}) and min_pixels ({min_pixels}) must be at least 1")
    source = _source(data, cfg, cfg.data.val_split)
    samples = require_labels(source.discover(), str(data))
    check_scales(samples, cfg.generate.scales, cfg.generate.tile_size, exif=cfg.data.exif_transpose)
    out = Path(out)
    check_output_dir(out, "out")
    settings = CalibrationSettings(
        target_precision=float(target_precision),
        per_class_temperature=per_class_temperature,
        max_pixels=int(max_pixels),
        min_pixels=int(min_pixels),
    )
    if on_total is not None:
        on_total(len(samples))
    payload = calibrate(
        Path(teacher),
        samples,
        class_set_from_config(cfg.classes),
        generate=cfg.generate,
        data=cfg.data,
        settings=settings,
        labels_are_train_ids=_train_ids(values, "values"),
        data_name=source.spec(),
        split=source.split or None,
        on_image=(lambda: on_image(1)) if on_image is not None else None,
    )
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / CALIBRATION_FILE, payload)
    return payload


def rethreshold_labels(
    labels: str | Path,
    *,
    threshold: float | None = None,
    class_thresholds: str | dict[str, float] | None = None,
    calibration: str | Path | None = None,
    portion: float | None = None,
    out: str | Path | None = None,
    in_place: bool = False,
    overwrite: bool = False,
    on_total: CountFn | None = None,
    on_image: CountFn | None = None,
) -> RethresholdResult:
    """A new label set at other thresholds, from ``labels``' confidence store (no teacher needed); it is
    verified (``result.problems``). See :mod:`autolabel.labelset.rethreshold`.

    Args:
        labels: a label-set folder with a confidence store.
        threshold: a global threshold on the set's grid (``labelset.json`` ``ladder_available``).
        class_thresholds: per-class thresholds: a mapping, ``"road=0.9,car=0.8"`` or a JSON/TOML file of them
            (the classes not named: ``threshold``, or their current ones).
        calibration: ``calibrate``'s ``calibration.json`` for the set's teacher: its per-class thresholds for
            the probabilities the set holds (rounded up to the grid).
        portion: CBST: per class, keep the most confident share of the pixels predicted as that class.
        out: the new label set's folder (default: ``<labels>-<id prefix>`` next to ``labels``).
        in_place: rewrite ``labels`` itself instead.
        overwrite: replace a different label set already in ``out``.
        on_total, on_image: progress callbacks (images).
    """
    per_class = parse_class_thresholds(class_thresholds) if isinstance(class_thresholds, str) else class_thresholds
    request = ThresholdRequest(
        threshold=threshold,
        class_thresholds=dict(per_class or {}),
        calibration=Path(calibration) if calibration is not None else None,
        portion=portion,
    )
    request.check()
    if out is not None:
        check_output_dir(Path(out), "out")
    if on_total is not None:
        on_total(labelset.read_manifest(labels).num_rows)
    return rethreshold(labels, request, out, in_place=in_place, overwrite=overwrite, on_image=on_image)


def read_labelset(labels: str | Path) -> dict[str, Any]:
    """A label set's ``labelset.json``: provenance (teacher, settings, classes) and its id.

    Args:
        labels: a label-set folder.
    """
    return labelset.read_labelset(labels)


def read_manifest(labels: str | Path, status: str | None = "ok") -> pa.Table:
    """A label set's manifest as a pyarrow table, one row per image (``status=None``: error rows too).

    Args:
        labels: a label-set folder.
        status: keep only rows with this status (``"ok"``, ``"error"``), or all with None.
    """
    return labelset.read_manifest(labels, status=status)


def verify_labels(labels: str | Path, *, check_inputs: bool = True) -> VerifyReport:
    """Check a label set on disk: every file against its manifest row, and every input against the rows.

    Args:
        labels: a label-set folder.
        check_inputs: also list the inputs again and check each has exactly one row.
    """
    return _verify_labelset(labels, check_inputs=check_inputs)


def review_export(
    labels: str | Path,
    out: str | Path,
    *,
    top: int = 20,
    by: str | Sequence[str] = DEFAULT_BY,
    format: str = "cvat-cityscapes",
    config: PipelineConfig | str | Path | None = None,
    boost_classes: Sequence[str] | None = None,
    image_url: str | None = None,
    overwrite: bool = False,
) -> ExportResult:
    """Select the images of a label set that most need a human look and write them as a review package.

    Args:
        labels: a label-set folder.
        out: the package folder (new, empty, or an earlier package with ``overwrite``).
        top: how many images to select.
        by: ranking signals, e.g. ``"confidence,disagreement"`` (see :mod:`autolabel.review.ranking`).
        format: ``cvat-cityscapes``, ``cvat-mask`` or ``label-studio`` (see ``docs/review.md``).
        config: a pipeline config or its path: class colours, and ``student.boost_classes`` for ``rare``.
        boost_classes: the rare classes of signal ``rare`` (default: the config's ``student.boost_classes``).
        image_url: Label Studio: the URL prefix of the package's images (default: its local-files URL).
        overwrite: replace an earlier package in ``out``.
    """
    cfg = _config(config) if config is not None else None
    classes = class_set_from_config(cfg.classes) if cfg is not None else None
    if boost_classes is None:
        boost_classes = cfg.student.boost_classes if cfg is not None else ()
    kwargs = {"image_url": image_url} if image_url is not None else {}
    return export_review(
        labels,
        out,
        top=top,
        by=by,
        fmt=format,
        classes=classes,
        boost_classes=tuple(boost_classes),
        overwrite=overwrite,
        **kwargs,
    )


def review_import(
    labels: str | Path,
    exported: str | Path,
    out: str | Path,
    *,
    review: str | Path | None = None,
    format: str | None = None,
    config: PipelineConfig | str | Path | None = None,
    overwrite: bool = False,
) -> ImportResult:
    """Take a tool's corrected export back in as a new version of the label set (``source = "human"`` rows).

    Args:
        labels: the label set the package was exported from.
        exported: the tool's export: CVAT's zip (or its folder), Label Studio's JSON file.
        out: the new label set's folder.
        review: the package's ``review.json`` (default: one beside or inside ``exported``).
        format: the export's format (default: recognised from its content).
        config: a pipeline config or its path (its class list must be the label set's).
        overwrite: replace another label set in ``out``.
    """
    classes = class_set_from_config(_config(config).classes) if config is not None else None
    return import_review(labels, exported, out, review=review, fmt=format, classes=classes, overwrite=overwrite)


def diff_labelsets(
    a: str | Path,
    b: str | Path,
    *,
    top: int = 10,
    config: PipelineConfig | str | Path | None = None,
    on_total: CountFn | None = None,
    on_image: CountFn | None = None,
) -> dict[str, Any]:
    """What changed from label set ``a`` to ``b`` over the images both labelled (what ``autolabel diff``
    prints): per class pixels gained, lost and flipped, the changed share, the confusion matrix A -> B
    (ignore included) and the ``top`` images that changed most.

    Args:
        a, b: label-set folders with the same class list.
        top: how many of the most-changed images to list.
        config: a pipeline config or its path (only ``data.max_image_pixels`` is used).
        on_total, on_image: progress callbacks (images).
    """
    max_pixels = _config(config).data.max_image_pixels
    return _diff_labelsets(a, b, top=top, max_pixels=max_pixels, on_total=on_total, on_image=on_image)


def run_rounds(
    config: str | Path,
    out: str | Path,
    *,
    rounds: int = 2,
    overrides: Sequence[str] = (),
    seeds: Sequence[int] | None = None,
    jobs: int = 2,
    stop_when: str | None = None,
    synthetic: bool | City = False,
    report: bool = True,
    command: str = "autolabel.run_rounds",
    on_stage: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Self-training rounds (``autolabel rounds``): round 1 trains a teacher on fine labels, labels the pool
    and trains a student; round k+1 labels the pool with round k's student and trains a new student. Resumes
    an interrupted run in ``out``; returns what ``out/rounds.json`` holds.

    Args:
        config: a pipeline TOML (``pipelines/demo.toml``).
        out: the run folder (``round-k/`` per round; ``seed-S/round-k/`` with ``seeds``).
        rounds: how many rounds at most.
        overrides: ``"train.lr=0.01"``-style config overrides.
        seeds: training seeds, one chain of rounds each, ``jobs`` side by side (default: one chain with the
            config's ``train.seed``).
        jobs: chains trained side by side, one torch thread each.
        stop_when: ``"changed<X"`` or ``"miou-plateau[<D]"``: stop after the first round where it fires.
        synthetic: make a synthetic city in ``out/city`` and train on it: True for the demo's size, or a
            :class:`~autolabel.workflows.rounds.City` (image counts, size, seed).
        report: write each round's label-set report (with the diff from the round before).
        command: how the results name what produced them.
        on_stage: called with a line of text as each stage starts.
    """
    check_output_dir(Path(out), "out")
    settings = RoundsSettings(
        out=Path(out),
        config=Path(config),
        rounds=rounds,
        overrides=tuple(overrides),
        city=synthetic if isinstance(synthetic, City) else City() if synthetic else None,
        seeds=tuple(seeds) if seeds is not None else None,
        jobs=jobs,
        stop_when=parse_stop_rule(stop_when) if stop_when is not None else None,
        report=report,
        command=command,
    )
    return _run_rounds(settings, on_stage=on_stage)
