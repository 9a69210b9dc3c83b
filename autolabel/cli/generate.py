"""`autolabel generate | manifest | verify`: the auto-labelling commands (`rethreshold`: cli/quality.py)."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import click

from autolabel.cli.base import (
    FOLDER,
    Flag,
    LazyBar,
    alias_option,
    apply_flags,
    check_out_dir,
    config_option,
    finished_with_errors,
    flag_errors,
    load_pipeline,
    main,
    parse_list,
    plural,
    resolve_alias,
    set_option,
    values_option,
)
from autolabel.cli.evaluate import json_option
from autolabel.config import PipelineConfig, format_size
from autolabel.data.sources import IMAGES_HELP, SPEC_HELP

if TYPE_CHECKING:
    from autolabel.generate.planner import LabelPlan

DATA_HELP = (
    f"The images to label (folders are searched recursively): {SPEC_HELP}. Default: the config's [data] at "
    f"generate.split (with --config or data.root). {IMAGES_HELP}."
)
LABELSET = click.argument("labelset", metavar="LABELSET", type=FOLDER)


@main.command("generate", short_help="Auto-label images with a teacher (resumable, sharded).", compute=True)
@click.option(
    "--teacher",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Teacher checkpoint (written by train-teacher or import-checkpoint).",
)
@click.option("--data", "data_spec", default=None, metavar="SPEC", help=DATA_HELP)
@click.option(
    "--out",
    type=FOLDER,
    required=True,
    help="Folder of the label set (created; a rerun resumes it; a different label set there is refused).",
)
@config_option
@set_option("generate.threshold=0.9")
@click.option("--scales", default=None, metavar="S,...", help="Inference scales, e.g. 0.5,1.0,2.0 [generate.scales].")
@click.option("--flip/--no-flip", default=None, help="Average with the flipped image [generate.flip].")
@click.option(
    "--threshold",
    type=float,
    default=None,
    help="Keep a pixel's class only where the max probability exceeds this, else 255 [generate.threshold].",
)
@click.option(
    "--calibration",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="`autolabel calibrate`'s calibration.json for this teacher: logits / T, per-class thresholds "
    "[generate.calibration].",
)
@click.option("--batch-size", type=int, default=None, help="Images per forward pass [generate.batch_size].")
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default=None,
    help="Where the teacher runs [generate.device].",
)
@click.option(
    "--precision",
    type=click.Choice(["auto", "fp32", "bf16", "fp16"]),
    default=None,
    help="Autocast of the forward (auto: bf16/fp16 on a GPU, fp32 on the CPU) [generate.precision].",
)
@click.option(
    "--tile-size",
    type=int,
    default=None,
    help="Sliding-window inference when a scaled side exceeds this many pixels; 0 = never [generate.tile_size].",
)
@click.option(
    "--memory-budget",
    default=None,
    metavar="SIZE",
    help="Memory labelling may use (8GiB, 8G, 500MB; auto: a GPU's free memory, none on the CPU; none); with "
    "tile size 0 the planner picks the largest tiling that fits [generate.memory_budget].",
)
@click.option("--confidence/--no-confidence", default=None, help="Keep the confidence store [generate.confidence].")
@click.option(
    "--attention/--no-attention", default=None, help="Also write per-scale attention maps [generate.attention]."
)
@click.option(
    "--decode-workers",
    type=int,
    default=None,
    metavar="N",
    help="Image-decoding threads (default: from the usable cores) [generate.decode_workers].",
)
@click.option(
    "--encode-workers",
    type=int,
    default=None,
    metavar="N",
    help="Label/confidence encoding threads (default: from the usable cores) [generate.encode_workers].",
)
@values_option(
    "Values of the written label PNGs: train ids 0..C-1 or the dataset's label ids [generate.label_ids].", None
)
@click.option(
    "--shard",
    "shard_text",
    default=None,
    metavar="I/N",
    help="Label shard I of N (default: SLURM array or RANK/WORLD_SIZE variables, else all).",
)
@click.option(
    "--dask-workers",
    type=click.IntRange(min=0),
    default=None,
    help="Run on a local Dask cluster of this many worker processes, one teacher each (0: one per GPU).",
)
@click.option("--dask-scheduler", default=None, metavar="ADDRESS", help="Run on an existing Dask cluster.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Label at most N images of the shard.")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Plan the run: the tiling, and seconds per image, wall time, peak memory and output size measured on "
    "a couple of images; write nothing.",
)
@json_option('the plan (with --dry-run; fields in docs/usage.md, "Planning a run")')
@click.option(
    "--devices",
    type=click.IntRange(min=1),
    default=None,
    help="With --dry-run: devices the shards run on, for the all-shards wall time (default: the shard count).",
)
@click.option("--fail-fast", is_flag=True, help="Stop at the first unreadable image (exit 3).")
@click.option("--overwrite", is_flag=True, help="Replace a different label set already in --out.")
@click.option(
    "--recheck-inputs/--no-recheck-inputs",
    default=False,
    help="Hash every input again, and relabel images whose rows have no input fingerprint (older manifests).",
)
@click.option("--wait/--no-wait", default=False, help="If another job is labelling this shard into --out, wait for it.")
@alias_option("--dataset", "--data", "--data SPEC (same grammar)")
@alias_option("--images", "--data", "--data DIR (a folder of images)", convert=lambda v: f"folder:{v}")
@alias_option("--label-ids", "--values", "--values label-ids", is_flag=True, convert=lambda v: "label-ids")
@alias_option("--workers", "--dask-workers", "--dask-workers N", type=click.IntRange(min=0))
@alias_option("--scheduler", "--dask-scheduler", "--dask-scheduler ADDRESS")
@click.pass_context
def generate_cmd(
    ctx: click.Context,
    teacher: Path,
    data_spec: str | None,
    out: Path,
    config_path: Path | None,
    overrides: tuple[str, ...],
    scales: str | None,
    flip: bool | None,
    threshold: float | None,
    calibration: Path | None,
    batch_size: int | None,
    device: str | None,
    precision: str | None,
    tile_size: int | None,
    memory_budget: str | None,
    confidence: bool | None,
    attention: bool | None,
    decode_workers: int | None,
    encode_workers: int | None,
    values: str | None,
    shard_text: str | None,
    dask_workers: int | None,
    dask_scheduler: str | None,
    limit: int | None,
    dry_run: bool,
    json_path: str | None,
    devices: int | None,
    fail_fast: bool,
    overwrite: bool,
    recheck_inputs: bool,
    wait: bool,
) -> None:
    """Label images with a multi-scale teacher into the label set --out: thresholded label PNGs, a manifest
    (one row per image), a confidence store.

    Safe to kill and rerun: finished images are skipped. Exit 0 when every image was labelled, 3 when it
    finished but some could not be (each is printed once and recorded in the manifest), 2 for a bad option
    or when another job is labelling the same shard, 143/130 when stopped by SIGTERM/SIGINT after finishing
    the batch in flight (rerun to continue).

    \b
    Examples:
      autolabel generate --teacher t.pt --data cityscapes:/data/cs:train_extra --out labels
      autolabel generate --teacher t.pt --data /data/photos --out labels --scales 0.5,1.0,2.0
      autolabel generate --teacher t.pt --data /data/photos --out labels --memory-budget 16GiB --dry-run --json
    """
    data_spec = resolve_alias(ctx, "--data", "data_spec", data_spec)
    values = resolve_alias(ctx, "--values", "values", values)
    dask_workers = resolve_alias(ctx, "--dask-workers", "dask_workers", dask_workers)
    dask_scheduler = resolve_alias(ctx, "--dask-scheduler", "dask_scheduler", dask_scheduler)
    flags = [
        Flag("--scales", "generate.scales", parse_list(scales, "--scales")),
        Flag("--flip", "generate.flip", flip),
        Flag("--threshold", "generate.threshold", threshold),
        Flag("--calibration", "generate.calibration", calibration),
        Flag("--batch-size", "generate.batch_size", batch_size),
        Flag("--device", "generate.device", device),
        Flag("--precision", "generate.precision", precision),
        Flag("--tile-size", "generate.tile_size", tile_size),
        Flag("--memory-budget", "generate.memory_budget", memory_budget),
        Flag("--confidence", "generate.confidence", confidence),
        Flag("--attention", "generate.attention", attention),
        Flag("--decode-workers", "generate.decode_workers", decode_workers),
        Flag("--encode-workers", "generate.encode_workers", encode_workers),
        Flag("--values", "generate.label_ids", None if values is None else values == "label-ids"),
    ]
    # everything is checked before anything is written: flags like config values, the data, --out
    cfg = apply_flags(load_pipeline(config_path, overrides), flags)
    data = _data(data_spec, config_path, cfg)
    check_out_dir(out)
    classes: Literal["config", "teacher"] = "config" if config_path is not None else "teacher"
    for name, given in (("--json", json_path is not None), ("--devices", devices is not None)):
        if given and not dry_run:
            raise click.UsageError(f"{name} plans a run: use it with --dry-run")
    if dry_run:
        with flag_errors(flags):
            _dry_run(teacher, data, out, cfg, classes, shard_text, limit, devices, json_path)
        return
    from autolabel.api import generate_labels  # torch and the runner load only when there is work
    from autolabel.generate.runner import FailFastError

    bar = LazyBar("labelling", rate=True)
    try:
        with flag_errors(flags):
            result = generate_labels(
                teacher,
                data,
                out,
                config=cfg,
                classes=classes,
                shard=shard_text,
                limit=limit,
                workers=dask_workers,
                scheduler=dask_scheduler,
                overwrite=overwrite,
                fail_fast=fail_fast,
                recheck_inputs=recheck_inputs,
                wait=wait,
                on_total=bar.start,
                on_image=bar.advance,
            )
    except FailFastError as exc:
        bar.close()
        finished_with_errors(f"Error: {exc}")
    except KeyboardInterrupt:  # before labelling started (once it has, SIGINT finishes the batch instead)
        bar.close()
        click.echo("stopped before labelling started; rerun to continue", err=True)
        sys.exit(128 + signal.SIGINT)
    bar.close()
    if result.stopped is not None:
        click.echo(f"stopped after {result.finished_images} images; rerun to continue", err=True)
        sys.exit(128 + result.stopped)
    click.echo(
        f"label set {result.labelset_id} in {out}: {result.ok} labelled, {result.skipped} already done, "
        f"{plural(len(result.errors), 'error')}, {result.seconds:.1f} s"
    )
    _warn_if_useless(out)
    if result.errors:
        if dask_scheduler is not None:
            # workers of a remote cluster warn in their own logs; here is the one place the user sees why
            # (local workers, like this process, print each failure once as it happens)
            for image_id, message in result.errors[:20]:
                click.echo(f"error: {image_id}: {message}", err=True)
        finished_with_errors(
            f"{plural(len(result.errors), 'image')} could not be labelled; `autolabel manifest {out}` lists why"
        )


def _warn_if_useless(out: Path) -> None:
    """Say so loudly when the label set is all but useless (almost no labelled pixel, non-finite confidences)."""
    from autolabel import labelset as labelsets
    from autolabel.labelset.manifest import quality_warnings

    for warning in quality_warnings(labelsets.read_manifest(out, status=None)):
        click.secho(f"warning: {warning}", err=True, fg="yellow")


def _data(spec: str | None, config_path: Path | None, cfg: PipelineConfig) -> str:
    """The --data spec, or the config's own [data] when one names a dataset."""
    if spec is not None:
        return spec
    if config_path is not None or cfg.data.root is not None:
        return "config"
    raise click.UsageError("name the images to label: --data SPEC, or --config with data.root")


def _dry_run(
    teacher: Path,
    data: str,
    out: Path,
    cfg: PipelineConfig,
    classes: Literal["config", "teacher"],
    shard: str | None,
    limit: int | None,
    devices: int | None,
    json_path: str | None,
) -> None:
    import json

    from autolabel.api import plan_labels
    from autolabel.fs import write_json

    plan = plan_labels(teacher, data, out, config=cfg, classes=classes, shard=shard, limit=limit, devices=devices)
    if json_path not in (None, "-"):
        write_json(Path(json_path), plan.to_json())
    click.echo(json.dumps(plan.to_json(), indent=2) if json_path == "-" else "\n".join(plan_lines(plan, out)))


def plan_lines(plan: LabelPlan, out: Path) -> list[str]:
    """The dry run's report, one line per subject (docs/usage.md, "Planning a run", shows one)."""
    lines = [
        f"label set {plan.labelset_id} -> {out}",
        f"inputs: {plural(plan.inputs, 'image')}, {plan.with_fine} with fine labels, "
        f"{plan.with_coarse} with coarse labels",
    ]
    if len(plan.per_shard) > 1:
        count = len(plan.per_shard)
        lines.append("per shard: " + ", ".join(f"{i}/{count}: {n}" for i, n in enumerate(plan.per_shard)))
    lines.append(
        f"shard {plan.shard}: {plural(plan.shard_size, 'image')}, {plan.done} already done, {plan.todo} to do, "
        f"{plural(plan.chunks, 'chunk')}"
    )
    t, m, g, tiling = plan.timing, plan.memory, plan.geometry, plan.tiling
    if t is None or m is None or g is None or tiling is None or plan.image_size is None:
        return lines
    s = plan.settings
    sizes = f" (of {len(plan.sizes_seen)} sizes seen)" if len(plan.sizes_seen) > 1 else ""
    lines.append(
        f"settings: {s['device']} {s['precision']}, scales {','.join(f'{v:g}' for v in s['scales'])}, "
        f"{'flip' if s['flip'] else 'no flip'}, batch {s['batch_size']}, teacher {s['model_width']}, "
        f"{plan.image_size[0]}x{plan.image_size[1]} images{sizes}"
    )
    budget = tiling.budget
    within = f" within {format_size(budget.bytes)} ({budget.source})" if budget.bytes is not None else ""
    how = {"auto": f"chosen{within}", "given": "generate.tile_size", "whole": "no memory budget"}[tiling.choice]
    if g.window is None:
        lines.append(f"tiling: none, whole images ({how})")
    else:
        lines.append(
            f"tiling: tile size {g.tile_size}, {g.windows} windows of {g.window[1]}x{g.window[0]} px per image ({how})"
        )
    where = (
        f"measured on {plural(t.timed_images, 'image')} at the real size"
        if t.measured == "real size"
        else "extrapolated from the probes (the real size was not run: it would not fit)"
    )
    lines.append(
        f"estimate: {t.seconds_per_image:.3g} s per image, {t.images_per_hour:.0f} images/hour, {where}; "
        f"forward {t.forward_seconds:.3g} s, host {t.host_seconds:.3g} s (decode {t.decode_seconds:.3g}, encode "
        f"{t.encode_seconds:.3g}): the {t.bottleneck} is the bottleneck"
    )
    lines.append(
        f"wall time: {_duration(plan.wall_seconds or 0)} for this shard ({plan.todo} images, start-up "
        f"{t.startup_seconds:.1f} s); all shards on {plural(plan.devices, 'device')}: "
        f"{_duration(plan.wall_seconds_all_shards or 0)} ({plan.todo_all_shards} images)"
    )
    kind = "RSS growth" if m.kind == "rss" else "GPU memory allocated"
    model = f" (model: {format_size(m.model_forward_peak_bytes)})" if m.model_forward_peak_bytes is not None else ""
    fits = (
        "" if m.fits is None else f"; budget {format_size(m.budget_bytes or 0)}: {'fits' if m.fits else 'DOES NOT FIT'}"
    )
    lines.append(
        f"peak memory: {format_size(m.forward_peak_bytes)} {kind} of the forward{model}, "
        f"{format_size(m.baseline_bytes)} before it (the first forward kept {format_size(m.first_forward_bytes)})"
        + (f", {format_size(m.host_buffer_bytes)} images in flight" if m.host_buffer_bytes else "")
        + f": {format_size(m.total_bytes)} in all{fits}"
    )
    if plan.output is not None:
        o = plan.output
        lines.append(
            f"output: {format_size(o.output_bytes)} per image (labels {format_size(o.label_bytes)}, confidence "
            f"{format_size(o.confidence_bytes)}, attention {format_size(o.attention_bytes)}); "
            f"{format_size(o.output_bytes * plan.todo)} for this shard, "
            f"{format_size(o.output_bytes * plan.todo_all_shards)} for all shards"
        )
    return lines


def _duration(seconds: float) -> str:
    """``42 s``, ``12.5 min``, ``3.2 h``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


@main.command("manifest", short_help="Merge and summarise a label set's manifest.")
@LABELSET
def manifest_cmd(labelset: Path) -> None:
    """Merge LABELSET/manifest/part-*.parquet into LABELSET/manifest.parquet and print a summary: images, errors
    (with their reasons), ignored pixels, mean confidence, class shares."""
    from autolabel import labelset as labelsets

    meta = labelsets.read_labelset(labelset)
    table = labelsets.merge_manifest(labelset)
    summary = labelsets.summarise(table, meta["classes"])
    if summary["images"] == 0:
        click.echo(f"label set {meta['labelset_id']} in {labelset}: no manifest rows yet (no image finished)")
        return
    click.echo(
        f"label set {meta['labelset_id']}: {plural(summary['images'], 'image')}, {summary['ok']} ok, "
        f"{plural(len(summary['errors']), 'error')} -> {labelset / labelsets.MERGED_MANIFEST}"
    )
    if summary["ok"]:
        click.echo(
            f"ignored pixels {100 * summary['ignored_fraction']:.1f}%, mean confidence {summary['mean_confidence']:.3f}"
        )
        width = max(len(c["name"]) for c in summary["classes"])
        click.echo(f"{'class':<{width}}  pixels%  images")
        for c in summary["classes"]:
            click.echo(f"{c['name']:<{width}}  {100 * c['pixel_fraction']:6.2f}  {c['images']:6d}")
    for image_id, message in summary["errors"][:20]:
        click.echo(f"error: {image_id}: {message}")
    if len(summary["errors"]) > 20:
        click.echo(f"... and {len(summary['errors']) - 20} more errors (all in {labelsets.MERGED_MANIFEST})")


@main.command("verify", short_help="Check a label set on disk (exit 3 on problems).")
@LABELSET
@click.option(
    "--inputs/--no-inputs",
    default=True,
    show_default=True,
    help="Also list the inputs again and check each has exactly one row.",
)
def verify_cmd(labelset: Path, inputs: bool) -> None:
    """Check LABELSET: every label decodes with the recorded size, sha256 and values; every other output file
    (confidence, attention) has its recorded sha256; no temporary, stray or journal files; one row per input
    image, whose input is unchanged. Nothing is ever deleted.

    Exit 0 when all is well, 3 when anything is wrong or an image could not be labelled (error rows), 2 when
    LABELSET is not a label set.
    """
    from autolabel import labelset as labelsets
    from autolabel.api import verify_labels

    labelsets.read_labelset(labelset)  # not a label set at all: the user's error (exit 2), not a problem
    report = verify_labels(labelset, check_inputs=inputs)
    for problem in report.problems:
        click.echo(f"problem: {problem}")
    for image_id, message in report.error_rows:
        click.echo(f"error row: {image_id}: {message}")
    for note in report.notes:
        click.echo(f"note: {note}")
    click.echo(
        f"{labelset}: {plural(report.checked, 'label')} checked, {plural(len(report.problems), 'problem')}, "
        f"{plural(len(report.error_rows), 'error row')}"
    )
    if report.problems or report.error_rows:
        finished_with_errors(f"{labelset}: not clean (see above)")
