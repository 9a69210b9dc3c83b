"""`autolabel generate | manifest | rethreshold | verify`: the auto-labelling commands."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Literal

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
    progress,
    resolve_alias,
    set_option,
    values_option,
)
from autolabel.config import PipelineConfig
from autolabel.data.sources import IMAGES_HELP, SPEC_HELP

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
@click.option("--dry-run", is_flag=True, help="Show what would be done (and a time estimate); write nothing.")
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
    batch_size: int | None,
    device: str | None,
    precision: str | None,
    tile_size: int | None,
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
    """
    data_spec = resolve_alias(ctx, "--data", "data_spec", data_spec)
    values = resolve_alias(ctx, "--values", "values", values)
    dask_workers = resolve_alias(ctx, "--dask-workers", "dask_workers", dask_workers)
    dask_scheduler = resolve_alias(ctx, "--dask-scheduler", "dask_scheduler", dask_scheduler)
    flags = [
        Flag("--scales", "generate.scales", parse_list(scales, "--scales")),
        Flag("--flip", "generate.flip", flip),
        Flag("--threshold", "generate.threshold", threshold),
        Flag("--batch-size", "generate.batch_size", batch_size),
        Flag("--device", "generate.device", device),
        Flag("--precision", "generate.precision", precision),
        Flag("--tile-size", "generate.tile_size", tile_size),
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
    if dry_run:
        with flag_errors(flags):
            _dry_run(teacher, data, out, cfg, classes, shard_text, limit)
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
    if result.errors:
        if dask_scheduler is not None:
            # workers of a remote cluster warn in their own logs; here is the one place the user sees why
            # (local workers, like this process, print each failure once as it happens)
            for image_id, message in result.errors[:20]:
                click.echo(f"error: {image_id}: {message}", err=True)
        finished_with_errors(
            f"{plural(len(result.errors), 'image')} could not be labelled; `autolabel manifest {out}` lists why"
        )


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
) -> None:
    from autolabel.api import plan_labels

    plan = plan_labels(teacher, data, out, config=cfg, classes=classes, shard=shard, limit=limit)
    click.echo(f"label set {plan.labelset_id} -> {out}")
    click.echo(
        f"inputs: {plural(plan.inputs, 'image')}, {plan.with_fine} with fine labels, "
        f"{plan.with_coarse} with coarse labels"
    )
    if len(plan.per_shard) > 1:
        count = len(plan.per_shard)
        click.echo("per shard: " + ", ".join(f"{i}/{count}: {n}" for i, n in enumerate(plan.per_shard)))
    click.echo(
        f"shard {plan.shard}: {plural(plan.shard_size, 'image')}, {plan.done} already done, {plan.todo} to do, "
        f"{plural(plan.chunks, 'chunk')}"
    )
    if plan.seconds_per_image is not None:
        click.echo(
            f"estimate: {plan.seconds_per_image:.2f} s per image, about {plan.seconds_per_image * plan.todo / 60:.1f} "
            f"min for {plural(plan.todo, 'image')} on this process (from {plural(plan.timed_images, 'timed image')})"
        )


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


@main.command("rethreshold", short_help="Re-threshold a label set, no teacher needed.")
@LABELSET
@click.option(
    "--threshold",
    type=float,
    required=True,
    help="A value on the label set's confidence ladder (labelset.json 'ladder'), at or above its threshold.",
)
@click.option(
    "--out",
    type=FOLDER,
    default=None,
    help="Folder of the new label set [default: rewrite LABELSET in place].",
)
@click.option("--overwrite", is_flag=True, help="Replace a different label set already in --out.")
def rethreshold_cmd(labelset: Path, threshold: float, out: Path | None, overwrite: bool) -> None:
    """Re-threshold LABELSET from its confidence store (no teacher needed): the same labels as a fresh
    `generate --threshold T` would write."""
    from autolabel import labelset as labelsets
    from autolabel.labelset.rethreshold import rethreshold

    apply_flags(PipelineConfig(), [Flag("--threshold", "generate.threshold", threshold)])  # 0 <= T < 1 first
    if out is not None:
        check_out_dir(out)
    meta = labelsets.read_labelset(labelset)
    total = sum(status == "ok" for status in labelsets.read_all_rows(labelset).column("status").to_pylist())
    with progress(length=total, label="re-thresholding") as bar:
        result = rethreshold(labelset, threshold, out, overwrite=overwrite, on_image=bar.update)
    click.echo(
        f"re-thresholded {plural(result.images, 'image')} at {threshold:g} (was {meta['threshold']:g}): "
        f"label set {result.labelset_id} in {result.out}"
    )
    if result.errors:
        finished_with_errors(
            f"{plural(result.errors, 'image')} could not be re-thresholded: error rows in the manifest"
        )


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
