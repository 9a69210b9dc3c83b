"""`autolabel` commands for the data stage (registered on the main group)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import click

from autolabel.cli.base import FOLDER, check_out_dir, main, plural, progress

# autolabel.synth.render.SYNTH_VERSIONS and SYNTH_VERSION, spelled out so that the CLI's start-up imports no
# drawing code (tests/test_synth.py checks that they agree)
SYNTH_VERSION_CHOICES = ("1", "2")
SYNTH_DEFAULT_VERSION = "2"


def parse_size_option(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, int]:
    width, sep, height = value.lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit() or int(width) == 0 or int(height) == 0:
        raise click.BadParameter(f"{value!r} is not WIDTHxHEIGHT with positive sides, e.g. 256x128")
    return int(width), int(height)


@main.command("synth", short_help="Write a synthetic city in the Cityscapes layout.")
@click.argument("out", type=FOLDER)
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
    type=click.Choice(SYNTH_VERSION_CHOICES),
    default=SYNTH_DEFAULT_VERSION,
    show_default=True,
    help="City version: 2 is designed from the network's geometry; 1 remakes results made before it.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same bytes.")
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=None,
    help="Local worker processes drawing images (default: one per CPU core; 0 = in this process).",
)
@click.option(
    "--extra-fine/--no-extra-fine",
    default=False,
    show_default=True,
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
    """Write a synthetic city in the Cityscapes layout to the folder OUT: leftImg8bit/ (PNG images), gtFine/ and
    gtCoarse/ (labelIds PNGs) for train, val and train_extra (see docs/synthetic_city.md).

    \b
    Example:
      autolabel synth runs/city --train 20 --val 5 --extra 40 --size 256x128
    """
    from autolabel.synth import make_synthetic_city

    check_out_dir(out, "OUT")
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
        f"wrote {plural(total, 'image')} ({size[0]}x{size[1]}, version {version}, seed {seed}) to {out} in "
        f"{seconds:.1f} s; "
        f"coarse band {meta['coarse_band_px']} px"
    )
