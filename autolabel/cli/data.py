"""`autolabel` commands for the data stage (registered on the main group)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import click

from autolabel.cli.base import main, progress
from autolabel.synth import make_synthetic_city
from autolabel.synth.render import SYNTH_VERSION, SYNTH_VERSIONS


def parse_size_option(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, int]:
    width, sep, height = value.lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit():
        raise click.BadParameter(f"{value!r} is not WIDTHxHEIGHT, e.g. 256x128")
    return int(width), int(height)


@main.command("synth")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--train",
    type=click.IntRange(min=0),
    default=100,
    show_default=True,
    help="Images in train (with gtFine and gtCoarse).",
)
@click.option(
    "--val", type=click.IntRange(min=0), default=50, show_default=True, help="Images in val (with gtFine and gtCoarse)."
)
@click.option(
    "--extra",
    type=click.IntRange(min=0),
    default=300,
    show_default=True,
    help="Images in train_extra (gtCoarse only, like Cityscapes).",
)
@click.option(
    "--size",
    default="512x256",
    show_default=True,
    callback=parse_size_option,
    metavar="WxH",
    help="Image size in pixels (version 2 is designed for 512x256; docs/synthetic_city.md).",
)
@click.option(
    "--version",
    "version",
    type=click.Choice([str(v) for v in SYNTH_VERSIONS]),
    default=str(SYNTH_VERSION),
    show_default=True,
    help="City version: 2 is designed from the network's geometry; 1 remakes results made before it.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same bytes.")
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=None,
    help="Processes (default: one per CPU core; 0 = in this process).",
)
@click.option(
    "--extra-fine",
    is_flag=True,
    help="Also write gtFine for train_extra (Cityscapes has none; lets you audit auto labels).",
)
def synth(
    out: Path,
    train: int,
    val: int,
    extra: int,
    size: tuple[int, int],
    version: str,
    seed: int,
    workers: int | None,
    extra_fine: bool,
) -> None:
    """Write a synthetic city in the Cityscapes layout to OUT (see docs/synthetic_city.md)."""
    workers = (os.cpu_count() or 1) if workers is None else workers
    total = train + val + extra
    start = time.perf_counter()
    with progress(length=total, label="synth") as bar:
        meta = make_synthetic_city(
            out,
            train=train,
            val=val,
            extra=extra,
            size=size,
            seed=seed,
            workers=workers,
            extra_fine=extra_fine,
            on_progress=bar.update,
            version=int(version),
        )
    seconds = time.perf_counter() - start
    click.echo(
        f"wrote {total} images ({size[0]}x{size[1]}, version {version}, seed {seed}) to {out} in {seconds:.1f} s; "
        f"coarse band {meta['coarse_band_px']} px"
    )
