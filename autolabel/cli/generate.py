"""`autolabel generate | manifest | rethreshold | verify`: the auto-labelling commands."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import click

from autolabel import labelset
from autolabel.api import generate_labels, plan_labels
from autolabel.cli.base import LazyBar, config_option, load_pipeline, main, progress, set_option
from autolabel.data.sources import Source, parse_source
from autolabel.errors import EXIT_FINISHED_WITH_ERRORS, ConfigError
from autolabel.generate.runner import FailFastError


def _scales(text: str | None) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(s) for s in text.split(","))
    except ValueError:
        raise ConfigError(f"--scales {text!r}: expected comma-separated numbers, e.g. 0.5,1.0,2.0") from None


@main.command("generate")
@click.option(
    "--teacher",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Teacher checkpoint (written by train-teacher or import).",
)
@click.option(
    "--images",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Label every image under this folder.",
)
@click.option(
    "--dataset",
    "dataset_spec",
    default=None,
    metavar="LAYOUT:ROOT:SPLIT",
    help="Label a dataset split, e.g. cityscapes:/data/cityscapes:train_extra.",
)
@config_option
@set_option
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Output folder of the label set."
)
@click.option("--scales", default=None, help="Inference scales, e.g. 0.5,1.0,2.0 [generate.scales].")
@click.option("--flip/--no-flip", default=None, help="Average with the flipped image [generate.flip].")
@click.option(
    "--threshold", type=float, default=None, help="Keep a pixel only where max probability > this [generate.threshold]."
)
@click.option("--batch-size", type=int, default=None, help="[generate.batch_size]")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None, help="[generate.device]")
@click.option(
    "--tile-size",
    type=int,
    default=None,
    help="Tiled inference when a scaled side exceeds this many pixels [generate.tile_size].",
)
@click.option(
    "--shard",
    "shard_text",
    default=None,
    metavar="I/N",
    help="Label shard I of N (default: SLURM array or RANK/WORLD_SIZE variables, else all).",
)
@click.option(
    "--workers",
    type=int,
    default=None,
    help="Run on a local Dask cluster of this many worker processes (0: one per GPU).",
)
@click.option("--scheduler", default=None, metavar="ADDRESS", help="Run on an existing Dask cluster.")
@click.option("--confidence/--no-confidence", default=None, help="Keep the confidence store [generate.confidence].")
@click.option("--attention", is_flag=True, default=None, help="Also write per-scale attention maps.")
@click.option(
    "--label-ids",
    is_flag=True,
    default=None,
    help="Write dataset label ids (Cityscapes labelIds) instead of train ids.",
)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Label at most N images of the shard.")
@click.option("--dry-run", is_flag=True, help="Show what would be done (and a time estimate); write nothing.")
@click.option("--fail-fast", is_flag=True, help="Stop at the first unreadable image.")
@click.option("--overwrite", is_flag=True, help="Replace a different label set already in --out.")
@click.option(
    "--recheck-inputs",
    is_flag=True,
    help="Hash every input again, and relabel images whose rows have no input fingerprint (older manifests).",
)
@click.option("--wait", is_flag=True, help="If another job is labelling this shard into --out, wait for it.")
def generate_cmd(
    teacher: Path,
    images: Path | None,
    dataset_spec: str | None,
    config_path: Path | None,
    overrides: tuple[str, ...],
    out: Path,
    scales: str | None,
    flip: bool | None,
    threshold: float | None,
    batch_size: int | None,
    device: str | None,
    tile_size: int | None,
    shard_text: str | None,
    workers: int | None,
    scheduler: str | None,
    confidence: bool | None,
    attention: bool | None,
    label_ids: bool | None,
    limit: int | None,
    dry_run: bool,
    fail_fast: bool,
    overwrite: bool,
    recheck_inputs: bool,
    wait: bool,
) -> None:
    """Label images with a multi-scale teacher: thresholded label PNGs, manifest, confidence store.

    Exit codes: 0 done, 3 done but some images could not be labelled (see the manifest), 2 usage error
    (also: another job is labelling the same shard), 143/130 stopped by SIGTERM/SIGINT after finishing the
    batch in flight (rerun to continue).
    """
    cfg = load_pipeline(config_path, overrides)
    given = {
        "scales": _scales(scales),
        "flip": flip,
        "threshold": threshold,
        "batch_size": batch_size,
        "device": device,
        "tile_size": tile_size,
        "confidence": confidence,
        "attention": attention,
        "label_ids": label_ids,
    }
    given = {k: v for k, v in given.items() if v is not None}
    source = _source(images, dataset_spec, config_path, cfg)
    classes = "config" if config_path is not None else "teacher"
    if dry_run:
        _dry_run(teacher, source, out, cfg, classes, shard_text, limit, given)
        return
    bar = LazyBar("labelling", rate=True)
    try:
        result = generate_labels(
            teacher,
            source,
            out,
            config=cfg,
            classes=classes,
            shard=shard_text,
            limit=limit,
            workers=workers,
            scheduler=scheduler,
            overwrite=overwrite,
            fail_fast=fail_fast,
            recheck_inputs=recheck_inputs,
            wait=wait,
            on_total=bar.start,
            on_image=bar.advance,
            **given,
        )
    except FailFastError as exc:
        bar.close()
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_FINISHED_WITH_ERRORS)
    except KeyboardInterrupt:  # before labelling started (once it has, SIGINT finishes the batch instead)
        bar.close()
        click.echo("stopped before labelling started; rerun to continue", err=True)
        sys.exit(128 + signal.SIGINT)
    bar.close()
    if result.stopped is not None:
        click.echo(f"stopped after {result.finished_images} images; rerun to continue", err=True)
        sys.exit(128 + result.stopped)
    click.echo(
        f"label set {result.labelset_id} in {out}: {result.ok} labelled, {result.skipped} already "
        f"done, {len(result.errors)} errors, {result.seconds:.1f}s"
    )
    if result.errors:
        for image_id, message in result.errors[:20]:
            click.echo(f"  error: {image_id}: {message}", err=True)
        sys.exit(EXIT_FINISHED_WITH_ERRORS)


def _source(images: Path | None, dataset_spec: str | None, config_path: Path | None, cfg) -> Source:
    given = [n for n, v in (("--images", images), ("--dataset", dataset_spec)) if v is not None]
    if len(given) > 1:
        raise click.UsageError("give either --images or --dataset, not both")
    if images is not None:
        return Source(layout="folder", root=images.resolve())
    if dataset_spec is not None:
        return parse_source(dataset_spec, flag="--dataset", config=cfg.data, split=cfg.generate.split)
    if config_path is not None or cfg.data.root is not None:
        return Source.from_config(cfg.data, cfg.generate.split)
    raise click.UsageError(
        "name the images to label: --images ROOT, --dataset LAYOUT:ROOT:SPLIT, or --config with data.root"
    )


def _dry_run(
    teacher: Path, source: Source, out: Path, cfg, classes: str, shard: str | None, limit: int | None, settings: dict
) -> None:
    plan = plan_labels(teacher, source, out, config=cfg, classes=classes, shard=shard, limit=limit, **settings)
    click.echo(f"label set {plan.labelset_id} -> {out}")
    click.echo(f"inputs: {plan.inputs} images")
    if len(plan.per_shard) > 1:
        count = len(plan.per_shard)
        click.echo("per shard: " + ", ".join(f"{i}/{count}: {n}" for i, n in enumerate(plan.per_shard)))
    click.echo(
        f"shard {plan.shard}: {plan.shard_size} images, {plan.done} already done, {plan.todo} to do, "
        f"{plan.chunks} chunks"
    )
    if plan.seconds_per_image is not None:
        click.echo(
            f"estimate: {plan.seconds_per_image:.2f}s per image, about {plan.seconds_per_image * plan.todo / 60:.1f} "
            f"min for {plan.todo} images on this process (from {plan.timed_images} timed images)"
        )


@main.command("manifest")
@click.argument("out", type=click.Path(file_okay=False, exists=True, path_type=Path))
def manifest_cmd(out: Path) -> None:
    """Merge OUT/manifest/part-*.parquet into OUT/manifest.parquet and print a summary."""
    meta = labelset.read_labelset(out)
    table = labelset.merge_manifest(out)
    summary = labelset.summarise(table, meta["classes"])
    click.echo(
        f"label set {meta['labelset_id']}: {summary['images']} images, {summary['ok']} ok, "
        f"{len(summary['errors'])} errors -> {out / labelset.MERGED_MANIFEST}"
    )
    click.echo(
        f"ignored pixels {100 * summary['ignored_fraction']:.1f}%, mean confidence {summary['mean_confidence']:.3f}"
    )
    width = max(len(c["name"]) for c in summary["classes"])
    click.echo(f"{'class':<{width}}  pixels%  images")
    for c in summary["classes"]:
        click.echo(f"{c['name']:<{width}}  {100 * c['pixel_fraction']:6.2f}  {c['images']:6d}")
    for image_id, message in summary["errors"][:20]:
        click.echo(f"error: {image_id}: {message}")


@main.command("rethreshold")
@click.argument("out", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--threshold", type=float, required=True, help="A value on the label set's confidence ladder.")
@click.option(
    "--out",
    "dest",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write the new label set here instead of rewriting OUT.",
)
@click.option("--overwrite", is_flag=True, help="Replace a different label set already in --out.")
def rethreshold_cmd(out: Path, threshold: float, dest: Path | None, overwrite: bool) -> None:
    """Re-threshold a label set from its confidence store (no teacher needed)."""
    from autolabel.labelset.rethreshold import rethreshold

    meta = labelset.read_labelset(out)
    total = sum(status == "ok" for status in labelset.read_all_rows(out).column("status").to_pylist())
    with progress(length=total, label="re-thresholding") as bar:
        result = rethreshold(out, threshold, dest, overwrite=overwrite, on_image=bar.update)
    click.echo(
        f"re-thresholded {result.images} images at {threshold:g} (was {meta['threshold']:g}): "
        f"label set {result.labelset_id} in {result.out}"
    )
    if result.errors:
        click.echo(f"{result.errors} images could not be re-thresholded: error rows in the manifest", err=True)
        sys.exit(EXIT_FINISHED_WITH_ERRORS)


@main.command("verify")
@click.argument("out", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--no-inputs", is_flag=True, help="Skip the input checks (rows vs images, input fingerprints).")
def verify_cmd(out: Path, no_inputs: bool) -> None:
    """Check a label set: labels decode with the recorded size, sha256 and values; every other output file
    (confidence, attention) has its recorded sha256; no temporary, stray or journal files; one row per input
    image, whose input is unchanged. Exit code 3 when anything is wrong (nothing is ever deleted)."""
    from autolabel.api import verify_labels

    report = verify_labels(out, check_inputs=not no_inputs)
    for problem in report.problems:
        click.echo(f"problem: {problem}")
    for image_id, message in report.error_rows:
        click.echo(f"error row: {image_id}: {message}")
    for note in report.notes:
        click.echo(f"note: {note}")
    click.echo(
        f"{out}: {report.checked} labels checked, {len(report.problems)} problems, {len(report.error_rows)} error rows"
    )
    if not report.ok:
        sys.exit(EXIT_FINISHED_WITH_ERRORS)
