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

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa

from autolabel import config as config_module
from autolabel import labelset
from autolabel.classes import ClassSet, class_set_from_config
from autolabel.config import PipelineConfig
from autolabel.data.datasets import Sample
from autolabel.data.sources import Source, parse_source, require_labels
from autolabel.evaluate.audit import audit_labelset
from autolabel.evaluate.checkpoint import evaluate_checkpoint as _evaluate_checkpoint
from autolabel.generate.planner import LabelPlan
from autolabel.generate.planner import plan_labels as plan_generate
from autolabel.generate.runner import GenerateJob, GenerateResult, run_generate
from autolabel.generate.sharding import Shard, parse_shard, shard_from_env
from autolabel.labelset.verify import VerifyReport
from autolabel.labelset.verify import verify_labelset as _verify_labelset
from autolabel.models.device import resolve_device
from autolabel.models.evaluation import EvalSettings
from autolabel.review.export import ExportResult, export_review
from autolabel.review.importing import ImportResult, import_review
from autolabel.review.names import DEFAULT_BY
from autolabel.train.loop import FitResult, fit
from autolabel.train.state import Position

__all__ = [
    "audit_labels",
    "evaluate_checkpoint",
    "generate_labels",
    "load_config",
    "plan_labels",
    "read_labelset",
    "read_manifest",
    "review_export",
    "review_import",
    "train_student",
    "train_teacher",
    "verify_labels",
]

CountFn = Callable[[int], None]


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
        on_total: called once with the number of images in this shard.
        on_image: called with the number of images finished, as they finish.
        settings: ``[generate]`` values (``threshold=0.9``, ``scales=(0.5, 1.0)``, ...), checked like the config.
    """
    job, samples, class_set = _generate_job(
        teacher, data, out, config, classes, shard, limit, overwrite=overwrite, fail_fast=fail_fast, settings=settings
    )
    if on_total is not None:
        on_total(_shard_size(len(samples), job.shard, limit))
    if workers is not None or scheduler is not None:
        from autolabel.generate.dask_runner import run_generate_dask  # dask is heavy: only when asked for

        return run_generate_dask(job, samples, class_set, workers=workers or 0, scheduler=scheduler, on_image=on_image)
    return run_generate(job, samples, class_set, on_image=on_image)


def plan_labels(
    teacher: str | Path,
    data: str | Source,
    out: str | Path,
    *,
    config: PipelineConfig | str | Path | None = None,
    classes: Literal["config", "teacher"] | None = None,
    shard: str | Shard | None = None,
    limit: int | None = None,
    **settings: Any,
) -> LabelPlan:
    """What :func:`generate_labels` with the same arguments would do, and a time estimate; writes nothing.

    Args:
        teacher, data, out, config, classes, shard, limit, settings: as for :func:`generate_labels`.
    """
    job, samples, class_set = _generate_job(teacher, data, out, config, classes, shard, limit, settings=settings)
    return plan_generate(job, samples, class_set)


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
    out: str | Path | None,
    resume: bool,
    overwrite: bool,
    on_epoch_start: Callable[[int, int], None] | None,
    on_step: Callable[[Position, dict[str, float]], None] | None,
) -> FitResult:
    cfg = _config(config)
    if out is not None:
        cfg = config_module.replace(cfg, train=config_module.replace(cfg.train, out_dir=Path(out).resolve()))
    return fit(
        cfg,
        student=student,
        labels=[Path(p) for p in labels],
        resume=resume,
        overwrite=overwrite,
        on_step=on_step,
        on_epoch_start=on_epoch_start,
    )


def train_teacher(
    config: PipelineConfig | str | Path,
    *,
    out: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    on_epoch_start: Callable[[int, int], None] | None = None,
    on_step: Callable[[Position, dict[str, float]], None] | None = None,
) -> FitResult:
    """Train the teacher on the fine labels of the config's ``data.train_split``.

    Args:
        config: a pipeline config or its path.
        out: the run folder (default ``train.out_dir``): ``last.pt``, ``best.pt``, ``log.jsonl``, ...
        resume: continue the run in ``out`` exactly where it stopped.
        overwrite: replace a previous run in ``out`` instead of refusing.
        on_epoch_start: ``(epoch, steps)`` at the start of every epoch (main process only).
        on_step: ``(position, loss parts)`` after every step (main process only).
    """
    return _train(
        config,
        student=False,
        labels=(),
        out=out,
        resume=resume,
        overwrite=overwrite,
        on_epoch_start=on_epoch_start,
        on_step=on_step,
    )


def train_student(
    config: PipelineConfig | str | Path,
    labels: Sequence[str | Path] = (),
    *,
    out: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    on_epoch_start: Callable[[int, int], None] | None = None,
    on_step: Callable[[Position, dict[str, float]], None] | None = None,
) -> FitResult:
    """Train a student on the fine labels plus auto-label sets.

    Args:
        config: a pipeline config or its path; ``[student]`` says how the sets are mixed in.
        labels: label-set folders written by :func:`generate_labels` (default ``student.labels``).
        out, resume, overwrite, on_epoch_start, on_step: as for :func:`train_teacher`.
    """
    return _train(
        config,
        student=True,
        labels=labels,
        out=out,
        resume=resume,
        overwrite=overwrite,
        on_epoch_start=on_epoch_start,
        on_step=on_step,
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
    labels_are_train_ids: bool = False,
    save_predictions: str | Path | None = None,
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
        device: ``auto``, ``cpu`` or ``cuda``.
        labels_are_train_ids: the labels hold train ids rather than dataset label ids.
        save_predictions: write the predictions under this folder too.
        on_total, on_image: progress callbacks (images).
    """
    cfg = _config(config)
    samples = require_labels(_source(data, cfg, cfg.data.val_split).discover(), str(data))
    settings = EvalSettings(
        scales=tuple(sorted(float(s) for s in scales)) if scales else (),
        flip=flip,
        tile_size=tile_size,
        mean=cfg.data.mean,
        std=cfg.data.std,
        max_pixels=cfg.data.max_image_pixels,
    )
    if on_total is not None:
        on_total(len(samples))
    payload = _evaluate_checkpoint(
        checkpoint,
        samples,
        class_set_from_config(cfg.classes),
        settings=settings,
        device=resolve_device(device),
        labels_are_train_ids=labels_are_train_ids,
        save_predictions=Path(save_predictions) if save_predictions is not None else None,
        on_image=(lambda: on_image(1)) if on_image is not None else None,
    )
    return {"data": data.spec() if isinstance(data, Source) else data, **payload}


def audit_labels(
    labels: str | Path,
    reference: str,
    *,
    config: PipelineConfig | str | Path | None = None,
    reference_train_ids: bool = False,
    on_total: CountFn | None = None,
    on_image: CountFn | None = None,
) -> dict[str, Any]:
    """Compare a label set with human labels: per-class precision, recall, IoU, coverage, threshold sweep.

    Args:
        labels: a label-set folder.
        reference: ``gtFine`` / ``gtCoarse`` (Cityscapes, next to each image) or a folder of ``<id>.png`` labels.
        config: the pipeline config whose classes the label set uses.
        reference_train_ids: the reference labels hold train ids rather than dataset label ids.
        on_total, on_image: progress callbacks (images).
    """
    cfg = _config(config)
    classes: ClassSet = class_set_from_config(cfg.classes)
    if on_total is not None:
        on_total(labelset.read_manifest(labels).num_rows)
    return audit_labelset(
        labels,
        reference,
        classes,
        reference_train_ids=reference_train_ids,
        max_pixels=cfg.data.max_image_pixels,
        on_image=(lambda: on_image(1)) if on_image is not None else None,
    )


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
    dest: str | Path,
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
        dest: the package folder (new, empty, or an earlier package with ``overwrite``).
        top: how many images to select.
        by: ranking signals, e.g. ``"confidence,disagreement"`` (see :mod:`autolabel.review.ranking`).
        format: ``cvat-cityscapes``, ``cvat-mask`` or ``label-studio`` (see ``docs/review.md``).
        config: a pipeline config or its path: class colours, and ``student.boost_classes`` for ``rare``.
        boost_classes: the rare classes of signal ``rare`` (default: the config's ``student.boost_classes``).
        image_url: Label Studio: the URL prefix of the package's images (default: its local-files URL).
        overwrite: replace an earlier package in ``dest``.
    """
    cfg = _config(config) if config is not None else None
    classes = class_set_from_config(cfg.classes) if cfg is not None else None
    if boost_classes is None:
        boost_classes = cfg.student.boost_classes if cfg is not None else ()
    kwargs = {"image_url": image_url} if image_url is not None else {}
    return export_review(
        labels,
        dest,
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
