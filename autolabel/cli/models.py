"""`autolabel` commands for the models stage (registered on the main group)."""

from __future__ import annotations

from pathlib import Path

import click

from autolabel.cli.base import config_option, load_pipeline, main, set_option


@main.command("import-checkpoint", short_help="Convert a published NVIDIA checkpoint.")
@click.argument("src", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("dst", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--classes",
    "preset",
    type=click.Choice(["cityscapes"]),
    default=None,
    help="Class preset the weights were trained on (default: the config's [classes]).",
)
@config_option
@set_option("model.width=w48")
def import_checkpoint(
    src: Path, dst: Path, preset: str | None, config_path: Path | None, overrides: tuple[str, ...]
) -> None:
    """Convert a published NVIDIA checkpoint SRC ({'state_dict': ...}) into an autolabel checkpoint DST.

    The network is the config's [model] (default: the published HRNetV2-W48 + OCR teacher); every key and
    shape of SRC must match it.
    """
    from autolabel.classes import class_set_from_config
    from autolabel.models.checkpoint import import_nvidia_checkpoint

    if preset is not None:
        overrides = (f"classes.preset={preset}", *overrides)
    cfg = load_pipeline(config_path, overrides)
    classes = class_set_from_config(cfg.classes)
    sha256 = import_nvidia_checkpoint(src, dst, cfg.model, classes.names)
    click.echo(f"wrote {dst} ({classes.num_classes} classes, sha256 {sha256})")
