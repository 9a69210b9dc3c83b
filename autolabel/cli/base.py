"""The ``autolabel`` click group and what every subcommand shares.

Subcommands live in sibling modules (one per pipeline stage) and register themselves on :data:`main`; they
stay thin: parse options, check them, call :mod:`autolabel.api`, print.

One vocabulary for every command (docs/usage.md, "Options"): a dataset is ``--data SPEC``, an output is the
folder ``--out DIR``, the label set a command reads is its ``LABELSET`` argument, label values are
``--values train-ids|label-ids``, switches come in ``--x/--no-x`` pairs. Old spellings stay as hidden aliases
(:func:`alias_option`) that print one ``note:`` line.

A flag that sets a config value is checked exactly like that value in a file (:func:`apply_flags`), before
anything is written, and its error names the flag and the key: ``--threshold 2: 2.0 is out of range, ...
(generate.threshold)``.

Start-up stays fast: nothing here (or in the command modules) imports torch, dask, zarr or pyarrow at module
level; the commands import what they run inside their functions, so ``autolabel --help`` never loads them.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import click

from autolabel import __version__
from autolabel import config as config_module
from autolabel.config import PipelineConfig, dump_toml, load_config
from autolabel.errors import EXIT_FINISHED_WITH_ERRORS, EXIT_USER_ERROR, AutolabelError, ConfigError, OutputError
from autolabel.fs import output_dir_problem

ALIASES = "autolabel.aliases"  # ctx.meta key: target flag -> [(old flag, value)]
HELP_WIDTH = 100


class FolderPath(click.Path):
    """A folder option or argument (``DIR``); whether it may be one is :func:`check_out_dir`'s to say, in one
    line naming the option, rather than click's usage error."""

    def __init__(self) -> None:
        super().__init__(path_type=Path)

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "DIR"


FOLDER = FolderPath()


class UserError(click.ClickException):
    """An :class:`AutolabelError` shown as ``Error: <message>`` on stderr with no traceback (exit 2)."""

    exit_code = EXIT_USER_ERROR


class AutolabelCommand(click.Command):
    """A subcommand: project errors become clean CLI errors; ``compute=True`` commands tune the allocator."""

    def __init__(self, *args: Any, compute: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.compute = compute

    def invoke(self, ctx: click.Context) -> Any:
        if self.compute:
            # imported here: autolabel.models pulls in torch, which `--help` must never wait for
            from autolabel.models.device import keep_freed_memory

            keep_freed_memory()  # CPU forwards re-allocate big logit maps; see autolabel/models/device.py
        try:
            return super().invoke(ctx)
        except AutolabelError as exc:
            raise UserError(str(exc)) from None


class AutolabelGroup(click.Group):
    """The ``autolabel`` group: its subcommands are :class:`AutolabelCommand` s."""

    command_class = AutolabelCommand

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AutolabelError as exc:
            raise UserError(str(exc)) from None


class _Formatter(logging.Formatter):
    """``warning: message`` by default (a log file reads like the terminal); time and logger with ``-v``."""

    def __init__(self, verbose: int) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s" if verbose else None)
        self.verbose = verbose

    def format(self, record: logging.LogRecord) -> str:
        if self.verbose:
            return super().format(record)
        return f"{record.levelname.lower()}: {record.getMessage()}"


@click.group(
    cls=AutolabelGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": HELP_WIDTH},
    epilog="Exit status: 0 done; 2 your error (bad option, config value, path, image, checkpoint), one line "
    "on stderr; 3 finished, but some images failed or `verify` found problems (they are listed).",
)
@click.version_option(__version__, prog_name="autolabel")
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def main(verbose: int) -> None:
    """Auto-labelling for semantic segmentation: train a teacher, label a pool of images, train a student.

    Every command takes --help; docs/usage.md has the whole vocabulary.
    """
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(verbose))
    handler.setLevel(level)  # libraries that set their own loggers' levels (dask) are held to it too
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


# ---------------------------------------------------------------------------------------------------------
# shared options


# The pipelines shipped with the package (autolabel/pipelines is the repository's pipelines/ folder, and a
# wheel carries its files), so `--config demo` and `autolabel demo` work from any folder after `pip install`.
PIPELINES = Path(__file__).resolve().parent.parent / "pipelines"

config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Pipeline TOML, or the name of a shipped one (demo, cityscapes, folder, reproduce); relative paths in "
    "it resolve against its folder. Defaults apply when omitted.",
)


def set_option(example: str) -> Callable:
    """``--set KEY=VALUE`` (repeatable), with an example that fits the command."""
    return click.option(
        "--set",
        "overrides",
        multiple=True,
        metavar="KEY=VALUE",
        help=f"Override a config value, checked like the file's own (repeatable; lists as a,b), e.g. --set {example}.",
    )


VALUES = ("train-ids", "label-ids")


def values_option(help: str, default: str | None = "label-ids") -> Callable:
    """``--values train-ids|label-ids``: what the label files a command reads or writes hold."""
    return click.option(
        "--values",
        type=click.Choice(VALUES),
        default=default,
        show_default=default is not None,
        help=help,
    )


def shipped_pipeline(name: str | Path) -> Path:
    """``name`` itself when it is a file, else the shipped pipeline of that name (``demo`` ->
    ``autolabel/pipelines/demo.toml``) when there is one, else ``name`` (whose loading then says it is missing)."""
    path = Path(name)
    if path.exists() or len(path.parts) != 1:
        return path
    shipped = PIPELINES / (path.name if path.suffix == ".toml" else f"{path.name}.toml")
    return shipped if shipped.is_file() else path


def load_pipeline(config_path: Path | None, overrides: Sequence[str]) -> PipelineConfig:
    """The checked config for a subcommand's ``--config``/``--set`` options."""
    return load_config(shipped_pipeline(config_path) if config_path is not None else None, overrides)


def check_not_installed(path: Path, key: str) -> None:
    """Refuse an output folder inside the Python installation: where a shipped pipeline's relative default
    (``../runs/...`` next to the installed package) points when the user named no folder of their own."""
    resolved = path.resolve()
    for prefix in {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()}:
        if resolved.is_relative_to(prefix) and resolved != prefix:
            raise OutputError(
                f"{key} {path}: inside the Python installation ({prefix}), where a shipped pipeline's default "
                "points; give --out DIR"
            )


def note(message: str) -> None:
    """One line for the user on stderr (never stdout, which may be piped into another tool)."""
    click.echo(f"note: {message}", err=True)


def plural(count: int, word: str, many: str | None = None) -> str:
    """``1 problem``, ``2 problems``."""
    return f"{count} {word if count == 1 else many or word + 's'}"


def finished_with_errors(message: str) -> NoReturn:
    """Exit 3 (finished, but some items failed) after ``message`` on stderr."""
    click.echo(message, err=True)
    sys.exit(EXIT_FINISHED_WITH_ERRORS)


# ---------------------------------------------------------------------------------------------------------
# flags that set config values


@dataclass(frozen=True)
class Flag:
    """A command-line flag that sets config key ``key`` (``"generate.threshold"``) to ``value``."""

    name: str
    key: str
    value: Any

    def shown(self) -> str:
        """The value as a user would have typed it."""
        return _show(self.value)


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return ""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple | list):
        return ",".join(_show(v) for v in value)
    return str(value)


def given(flags: Sequence[Flag]) -> list[Flag]:
    """The flags the user gave (value not None)."""
    return [f for f in flags if f.value is not None]


def apply_flags(cfg: PipelineConfig, flags: Sequence[Flag]) -> PipelineConfig:
    """``cfg`` with each given flag's value at its key, every value checked as a config file's would be.

    A bad value raises :class:`ConfigError` naming the flag first, then the key:
    ``--batch-size 0: 0 is out of range, expected a value in [1, inf] (generate.batch_size)``.
    """
    for flag in given(flags):
        section_name, _, name = flag.key.partition(".")
        with flag_errors([flag]):
            section = config_module.replace(getattr(cfg, section_name), **{name: flag.value})
            cfg = config_module.replace(cfg, **{section_name: section})
    return cfg


def check_like(flag: Flag, section: Any) -> None:
    """Check a flag that has no config key of its own by the rule of the key ``flag.key`` names in
    ``section`` (e.g. evaluate's ``--tile-size`` like ``generate.tile_size``); errors name only the flag."""
    if flag.value is None:
        return
    name = flag.key.rpartition(".")[2]
    try:
        config_module.replace(section, **{name: flag.value})
    except ConfigError as exc:
        shown = f"{flag.name} {flag.shown()}".rstrip()
        raise ConfigError(f"{shown}: {_without_key(str(exc), flag.key)}") from None


@contextmanager
def flag_errors(flags: Sequence[Flag]) -> Iterator[None]:
    """Rename a :class:`ConfigError` about a given flag's key to name the flag (and keep the key)."""
    try:
        yield
    except ConfigError as exc:
        message = str(exc)
        for flag in given(flags):
            if message.startswith(flag.key) and message[len(flag.key) : len(flag.key) + 1] in (":", "["):
                shown = f"{flag.name} {flag.shown()}".rstrip()
                raise ConfigError(f"{shown}: {_without_key(message, flag.key)} ({flag.key})") from None
        raise


def _without_key(message: str, key: str) -> str:
    """``"generate.threshold: 2.0 is out ..."`` -> ``"2.0 is out ..."`` (list items keep their index)."""
    rest = message[len(key) :] if message.startswith(key) else message
    if rest.startswith(":"):
        return rest[1:].strip()
    if rest.startswith("["):
        index, _, tail = rest.partition(":")
        return f"item {index.strip('[]')}: {tail.strip()}"
    return message


def parse_list(text: str | None, flag: str, convert: Callable[[str], Any] = float) -> tuple | None:
    """``0.5,1.0,2.0`` -> ``(0.5, 1.0, 2.0)`` (None stays None); a usage error naming ``flag`` otherwise."""
    if text is None:
        return None
    try:
        return tuple(convert(item.strip()) for item in text.split(",") if item.strip())
    except ValueError:
        raise ConfigError(f"{flag} {text!r}: expected comma-separated numbers, e.g. 0.5,1.0,2.0") from None


def parse_names(text: str | None) -> tuple[str, ...] | None:
    """``pole, person`` -> ``("pole", "person")``."""
    return None if text is None else tuple(n.strip() for n in text.split(",") if n.strip())


# ---------------------------------------------------------------------------------------------------------
# old option names


def alias_option(
    old: str,
    target: str,
    hint: str,
    *,
    is_flag: bool = False,
    convert: Callable[[Any], Any] = lambda value: value,
    type: Any = None,
) -> Callable:
    """A hidden old spelling ``old`` of the option ``target``: its (converted) value becomes ``target``'s,
    with one ``note:`` line saying what to write instead (``hint``). Read it back with :func:`resolve_alias`."""

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        if value is None or value is False or value == ():
            return
        note(f"{old} is deprecated; use {hint}")
        ctx.meta.setdefault(ALIASES, {}).setdefault(target, []).append((old, convert(value)))

    return click.option(
        old,
        "_alias" + old.replace("-", "_"),
        hidden=True,
        is_flag=is_flag,
        default=None,
        type=type,
        expose_value=False,
        callback=callback,
    )


def resolve_alias(ctx: click.Context, target: str, param: str, value: Any) -> Any:
    """``target``'s value: the one given with an old spelling if so (a usage error if both were given)."""
    old = ctx.meta.get(ALIASES, {}).get(target, [])
    if not old:
        return value
    source = ctx.get_parameter_source(param)
    typed = source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")
    if typed or len(old) > 1:
        names = [target] * typed + [name for name, _ in old]
        raise click.UsageError(f"give one of {', '.join(names)}, not several (they mean the same)")
    return old[0][1]


# ---------------------------------------------------------------------------------------------------------
# output folders


def check_out_dir(path: Path, flag: str = "--out") -> Path:
    """``path`` if it can be an output folder, else an :class:`OutputError` naming ``flag`` (see
    :func:`autolabel.fs.output_dir_problem`); checked before any work, so a bad ``--out`` writes nothing."""
    problem = output_dir_problem(path)
    if problem is not None:
        raise OutputError(f"{flag} {path}: {problem}")
    return path


# ---------------------------------------------------------------------------------------------------------
# progress


def interactive() -> bool:
    """Whether stderr is a terminal (a person watching) rather than a log file or a pipe."""
    return sys.stderr.isatty()


class _NoBar:
    """What :func:`progress` gives when stderr is not a terminal: nothing is printed."""

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: int = 1) -> None:
        return None


def progress(iterable=None, length: int | None = None, label: str = "", item_show_func=None):
    """A progress bar on stderr when it is a terminal; nothing at all in a log file or CI."""
    if not interactive():
        return _NoBar()
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


# ---------------------------------------------------------------------------------------------------------


@main.command("show-config", short_help="Print the resolved config.")
@click.argument("config_path", type=click.Path(dir_okay=False, path_type=Path), required=False)
@set_option("train.lr=0.01")
def show_config(config_path: Path | None, overrides: tuple[str, ...]) -> None:
    """Print the resolved config CONFIG_PATH (a pipeline TOML; the defaults when omitted): every key with its
    value, paths absolute, --set overrides applied and checked."""
    click.echo(dump_toml(load_pipeline(config_path, overrides)), nl=False)
