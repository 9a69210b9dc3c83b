"""The ``autolabel`` click group and what every subcommand shares.

Subcommands live in sibling modules (one per pipeline stage) and register themselves on :data:`main`; they
stay thin: parse options, call the stage's Python API, print.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from autolabel import __version__
from autolabel.config import PipelineConfig, dump_toml, load_config
from autolabel.errors import EXIT_USER_ERROR, AutolabelError
from autolabel.models.device import keep_freed_memory


class UserError(click.ClickException):
    """An :class:`AutolabelError` shown as ``Error: <message>`` with no traceback."""

    exit_code = EXIT_USER_ERROR


class AutolabelGroup(click.Group):
    """Turns project errors raised by any subcommand into clean CLI errors."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except AutolabelError as exc:
            raise UserError(str(exc)) from None


@click.group(cls=AutolabelGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="autolabel")
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def main(verbose: int) -> None:
    """Auto-labelling for semantic segmentation: train a teacher, label a pool of images, train a student."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    keep_freed_memory()  # CPU forwards re-allocate big logit maps; see autolabel/models/device.py


config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Pipeline TOML (see pipelines/). Defaults apply when omitted.",
)
set_option = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config value, e.g. --set train.lr=0.01 (repeatable).",
)


def load_pipeline(config_path: Path | None, overrides: Sequence[str]) -> PipelineConfig:
    """The checked config for a subcommand's ``--config``/``--set`` options."""
    return load_config(config_path, overrides)


def progress(iterable=None, length: int | None = None, label: str = "", item_show_func=None):
    """A progress bar on stderr (hidden when not a terminal, e.g. in CI logs)."""
    return click.progressbar(
        iterable,
        length=length,
        label=label,
        file=sys.stderr,
        show_eta=True,
        show_pos=True,
        item_show_func=item_show_func,
    )


class LazyBar:
    """A progress bar that appears once the amount of work is known (``start``), fed by ``advance(n)``.

    With ``rate``, the bar shows images per second since it started.
    """

    def __init__(self, label: str, *, rate: bool = False) -> None:
        self.label = label
        self.rate = rate
        self.bar: Any = None
        self.started = 0.0
        self.done = 0

    def start(self, total: int) -> None:
        self.close()
        self.started, self.done = time.perf_counter(), 0
        self.bar = progress(length=total, label=self.label, item_show_func=self._rate if self.rate else None)
        self.bar.__enter__()

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None

    def _rate(self, _item: object) -> str:
        elapsed = time.perf_counter() - self.started
        return f"{self.done / elapsed:.2f} img/s" if elapsed > 0 and self.done else ""


@main.command("show-config")
@click.argument("config_path", type=click.Path(dir_okay=False, path_type=Path), required=False)
@set_option
def show_config(config_path: Path | None, overrides: tuple[str, ...]) -> None:
    """Print the resolved config (defaults filled in, paths absolute, overrides applied)."""
    click.echo(dump_toml(load_pipeline(config_path, overrides)), nl=False)
