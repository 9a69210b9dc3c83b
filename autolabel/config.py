"""Frozen, checked configuration loaded from TOML.

Every section is a frozen dataclass. Loading walks the dataclass fields, so unknown keys, wrong types and
out-of-range values are rejected at load with the dotted key in the message. Ranges live in field metadata
(:func:`num`); cross-field checks live in each section's ``__post_init__`` and raise :class:`ConfigError`.
Relative paths are resolved against the config file's folder; ``--set a.b=v`` overrides go through the same
checks (their relative paths resolve against the working directory).
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from autolabel.errors import ConfigError

# ---------------------------------------------------------------------------------------------------------
# field helpers


def num(
    default: Any, lo: float | None = None, hi: float | None = None, *, lo_open: bool = False, hi_open: bool = False
) -> Any:
    """A numeric field with an allowed range, checked at load (``lo_open``/``hi_open`` exclude the bound)."""
    return field(default=default, metadata={"lo": lo, "hi": hi, "lo_open": lo_open, "hi_open": hi_open})


def _check_range(key: str, value: Any, meta: typing.Mapping[str, Any]) -> None:
    if isinstance(value, dict):
        for name, item in value.items():
            _check_range(f"{key}.{name}", item, meta)
        return
    values = value if isinstance(value, tuple) else (value,)
    lo, hi = meta.get("lo"), meta.get("hi")
    for v in values:
        if v is None or not isinstance(v, int | float):
            continue
        too_low = lo is not None and (v <= lo if meta.get("lo_open") else v < lo)
        too_high = hi is not None and (v >= hi if meta.get("hi_open") else v > hi)
        if too_low or too_high:
            left = "(" if meta.get("lo_open") else "["
            right = ")" if meta.get("hi_open") else "]"
            raise ConfigError(
                f"{key}: {v!r} is out of range, expected a value in "
                f"{left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{right}"
            )


# ---------------------------------------------------------------------------------------------------------
# sizes in bytes

# SLURM's --mem letters (K, M, G, T) are binary, as are KiB..TiB; kB, MB, GB, TB are decimal
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 2**10,
    "kib": 2**10,
    "kb": 10**3,
    "m": 2**20,
    "mib": 2**20,
    "mb": 10**6,
    "g": 2**30,
    "gib": 2**30,
    "gb": 10**9,
    "t": 2**40,
    "tib": 2**40,
    "tb": 10**12,
}
_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([a-zA-Z]*)\s*")
MEMORY_BUDGET_WORDS = ("auto", "none")


def parse_size(text: str, *, key: str = "size") -> int:
    """Bytes in ``text``: ``8GiB``, ``8G`` (binary, as SLURM's ``--mem``), ``500MB`` (decimal), ``1.5GiB``,
    or a plain number of bytes; a :class:`ConfigError` naming ``key`` otherwise."""
    match = _SIZE.fullmatch(text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _SIZE_UNITS:
        raise ConfigError(
            f"{key}: {text!r} is not a size; expected a number with a unit such as 8GiB, 8G, 500MB or 4096 (bytes)"
        )
    value = int(float(match.group(1)) * _SIZE_UNITS[unit])
    if value <= 0:
        raise ConfigError(f"{key}: {text!r} is not a positive size")
    return value


def format_size(nbytes: float) -> str:
    """``1.50 GiB``, ``31.2 MiB``, ``312 MiB``: binary units, three significant digits."""
    value, unit = float(nbytes), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            break
        value /= 1024
    if unit == "B":
        return f"{int(value)} B"
    digits = 2 if abs(value) < 10 else 1 if abs(value) < 100 else 0
    return f"{value:.{digits}f} {unit}"


# ---------------------------------------------------------------------------------------------------------
# sections


@dataclass(frozen=True)
class ClassesConfig:
    """The class list. ``preset`` names a built-in set; ``custom`` takes names (and optional colours/ids)."""

    preset: Literal["cityscapes", "custom"] = "cityscapes"
    names: tuple[str, ...] = ()
    colors: tuple[str, ...] = ()  # "#rrggbb" per class; generated when empty
    label_ids: tuple[int, ...] = ()  # the value each class has in the dataset's label files; identity if empty
    ignore_index: int = num(255, 0, 255)

    def __post_init__(self) -> None:
        if self.preset == "custom":
            if not self.names:
                raise ConfigError("classes.names: a custom class list needs at least one name")
            if len(self.names) > 254:
                raise ConfigError(f"classes.names: {len(self.names)} classes, at most 254 fit in a uint8 label")
            for key, seq in (("colors", self.colors), ("label_ids", self.label_ids)):
                if seq and len(seq) != len(self.names):
                    raise ConfigError(f"classes.{key}: {len(seq)} entries, expected one per name ({len(self.names)})")
        elif self.names or self.colors or self.label_ids:
            raise ConfigError(
                f"classes.names/colors/label_ids: only allowed with preset = 'custom', "
                f"not with preset = {self.preset!r}"
            )


@dataclass(frozen=True)
class DataConfig:
    """Where the images and labels are and how they are laid out."""

    layout: Literal["cityscapes", "mapillary", "folder", "filelist"] = "cityscapes"
    root: Path | None = None
    train_split: str = "train"
    val_split: str = "val"
    extra_split: str = "train_extra"
    max_image_pixels: int = num(64_000_000, 1)
    exif_transpose: bool = True  # turn photos upright by their EXIF Orientation tag, as viewers show them
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = num((0.229, 0.224, 0.225), 0.0, lo_open=True)

    def __post_init__(self) -> None:
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ConfigError("data.mean/data.std: expected 3 values (R, G, B)")


@dataclass(frozen=True)
class ModelConfig:
    """The network: trunk, head, multi-scale mode and scales. Built by :func:`autolabel.models.build_model`."""

    arch: Literal["hrnet_ocr", "deeplabv3plus"] = "hrnet_ocr"
    width: Literal["w48", "w18", "w18_small", "tiny"] = "w48"  # HRNet width (ignored by deeplabv3plus)
    num_classes: int = num(19, 1, 254)
    mscale: Literal["hierarchical", "avgpool", "explicit", "single"] = "hierarchical"
    train_scales: tuple[float, ...] = num((0.5, 1.0), 0.0, 4.0, lo_open=True)
    infer_scales: tuple[float, ...] = num((0.5, 1.0, 2.0), 0.0, 4.0, lo_open=True)
    attn_inner_3x3: bool = True  # attention head conv3x3-BN-ReLU x2 before the 1x1 (published default)
    dropout: float = num(0.05, 0.0, 1.0, hi_open=True)

    def __post_init__(self) -> None:
        for key in ("train_scales", "infer_scales"):
            scales = getattr(self, key)
            if not scales or list(scales) != sorted(set(scales)):
                raise ConfigError(f"model.{key}: {list(scales)} must be a non-empty, strictly increasing list")
        if self.mscale == "hierarchical" and 1.0 not in self.infer_scales:
            raise ConfigError(
                f"model.infer_scales: {list(self.infer_scales)} must contain 1.0 for hierarchical inference"
            )
        if self.mscale == "single" and len(self.train_scales) != 1:
            raise ConfigError("model.train_scales: mscale = 'single' takes exactly one scale")
        if self.mscale == "hierarchical" and len(self.train_scales) < 2:
            # one scale would never use the attention head: DDP then fails at the second step (unused
            # parameters), and the head would label with untrained weights
            raise ConfigError(
                f"model.train_scales: {list(self.train_scales)}; mscale = 'hierarchical' trains on a pair of scales "
                "(e.g. [0.5, 1.0]); for one scale use mscale = 'single'"
            )


@dataclass(frozen=True)
class LossConfig:
    """Loss terms (losses live outside the model)."""

    main: Literal["rmi", "ce"] = "rmi"
    aux_weight: float = num(0.4, 0.0)
    scale_weight: float = num(0.05, 0.0)  # supervised multi-scale loss on each scale's own prediction
    # per-class weights of the cross-entropy (one per class; empty = all 1): a class-balanced loss for a small
    # model on a short schedule, where rare thin classes are otherwise never learned (pipelines/demo.toml)
    class_weights: tuple[float, ...] = num((), 0.0)

    def __post_init__(self) -> None:
        if self.class_weights and self.main != "ce":
            raise ConfigError(f"loss.class_weights: only with loss.main = 'ce', not {self.main!r}")


@dataclass(frozen=True)
class TrainConfig:
    """One training loop for teacher and student."""

    out_dir: Path = Path("runs/teacher")
    epochs: int = num(10, 1)
    batch_size: int = num(2, 1)
    lr: float = num(1e-2, 0.0, lo_open=True)
    momentum: float = num(0.9, 0.0, 1.0, hi_open=True)
    weight_decay: float = num(1e-4, 0.0)
    poly_power: float = num(2.0, 0.0)
    warmup_iters: int = num(0, 0)
    crop_size: tuple[int, ...] = num((1024, 2048), 8)  # (height, width)
    scale_min: float = num(0.5, 0.0, lo_open=True)
    scale_max: float = num(2.0, 0.0, lo_open=True)
    flip: bool = True
    color_jitter: float = num(0.25, 0.0, 1.0)
    class_uniform_pct: float = num(0.5, 0.0, 1.0)
    class_uniform_tile: int = num(1024, 8)
    workers: int = num(2, 0)
    amp: Literal["off", "bf16", "fp16"] = "bf16"  # only on CUDA; CPU always trains in fp32
    device: Literal["auto", "cpu", "cuda"] = "auto"
    val_every: int = num(1, 0)  # epochs between validations; 0 = never
    max_iters: int = num(0, 0)  # stop after this many steps (0 = run all epochs); for smoke runs
    seed: int = 0
    log_every: int = num(10, 1)  # steps between training lines in the run's log.jsonl
    val_scales: tuple[float, ...] = num((1.0,), 0.0, 4.0, lo_open=True)  # scales of periodic validation

    def __post_init__(self) -> None:
        if len(self.crop_size) != 2:
            raise ConfigError(f"train.crop_size: {list(self.crop_size)}, expected [height, width]")
        if self.scale_min > self.scale_max:
            raise ConfigError(f"train.scale_min ({self.scale_min}) must not exceed train.scale_max ({self.scale_max})")


@dataclass(frozen=True)
class StudentConfig:
    """What ``train-student`` adds to the loop: auto-label sets and how to mix them with fine labels."""

    labels: tuple[Path, ...] = ()  # auto-label set directories written by `autolabel generate`
    epochs: int | None = num(None, 1)  # the student's own schedule; unset = train.epochs (the teacher's)
    auto_fraction: float = num(0.5, 0.0, 1.0)  # share of auto-labelled samples in each epoch
    threshold: float | None = num(None, 0.0, 1.0, hi_open=True)  # re-threshold from the confidence store
    boost_classes: tuple[str, ...] = ()  # classes whose centroids are taken from auto-labelled images
    drop_auto_after_epoch: int | None = num(None, 0)  # epochs >= this use fine data only
    coarse_fusion_classes: tuple[str, ...] = ()  # take human coarse labels for these classes where present
    fine_loss_weight: float = num(1.0, 0.0)
    auto_loss_weight: float = num(1.0, 0.0)
    # train even on a label set in which no pixel carries a label (by default that is refused: it would
    # train on fine labels only while saying otherwise)
    allow_empty_labels: bool = False
    # images of a label set corrected by `review import` (manifest source = "human"); unset = fine_loss_weight
    human_loss_weight: float | None = num(None, 0.0)


@dataclass(frozen=True)
class GenerateConfig:
    """`autolabel generate`: multi-scale teacher inference into thresholded label PNGs."""

    split: str = "train_extra"
    scales: tuple[float, ...] = num((0.5, 1.0, 2.0), 0.0, 4.0, lo_open=True)
    flip: bool = False
    threshold: float = num(0.5, 0.0, 1.0, hi_open=True)
    batch_size: int = num(1, 1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # autocast of the forward; auto = bf16 on GPUs that have it, else fp16 on CUDA, fp32 on the CPU
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    confidence: bool = True
    attention: bool = False
    label_ids: bool = False
    tile_size: int = num(0, 0)  # sliding-window inference when a scaled side exceeds this (0 = never)
    tile_overlap: float = num(0.25, 0.0, 0.9)  # fraction of a window shared with its neighbour
    chunk_size: int = num(64, 1)  # images per task / manifest part
    # writer / image-decoding threads; unset: sized from the usable cores (autolabel/generate/pools.py)
    encode_workers: int | None = num(None, 0)  # 0 counts as 1 (PNG + zstd encoding release the GIL)
    decode_workers: int | None = num(None, 1)
    png_compress_level: int = num(9, 0, 9)
    # the confidence store's grid: every multiple of ladder_step from ladder_bottom to ladder_top, plus the
    # thresholds themselves; re-thresholding is exact at each (docs/method.md, "Confidence store"; the default
    # step is chosen by `make bench`, confidence_store)
    ladder_step: float = num(0.01, 0.0, 1.0, lo_open=True)
    ladder_bottom: float = num(0.3, 0.0, 1.0, hi_open=True)
    ladder_top: float = num(0.98, 0.0, 1.0, hi_open=True)
    centroid_tile: int = num(1024, 8)  # class centroids are recorded per tile of this many pixels
    # class name -> threshold: these classes keep a pixel only above their own threshold (the others above
    # generate.threshold); with generate.calibration these override the calibration's for the classes named
    class_thresholds: dict[str, float] = field(default_factory=dict, metadata={"lo": 0.0, "hi": 1.0, "hi_open": True})
    # `autolabel calibrate`'s calibration.json for this teacher: logits / T before the softmax, and its
    # per-class thresholds (generate.threshold is then unused)
    calibration: Path | None = None
    # the memory labelling may use: "auto" (a GPU's free memory; no budget on the CPU), "none", or a size such
    # as "8GiB"/"500MB"; with a budget and tile_size 0 the planner picks the tiling (docs/usage.md, "Planning")
    memory_budget: str = "auto"

    def __post_init__(self) -> None:
        if not self.scales or list(self.scales) != sorted(set(self.scales)):
            raise ConfigError(f"generate.scales: {list(self.scales)} must be a strictly increasing list")
        if self.ladder_bottom > self.ladder_top:
            raise ConfigError(
                f"generate.ladder_bottom ({self.ladder_bottom}) must not exceed generate.ladder_top ({self.ladder_top})"
            )
        if self.memory_budget not in MEMORY_BUDGET_WORDS:
            try:
                parse_size(self.memory_budget, key="generate.memory_budget")
            except ConfigError as exc:
                raise ConfigError(f"{exc}; or auto (a GPU's free memory) or none") from None


@dataclass(frozen=True)
class PipelineConfig:
    """A complete pipeline: what every `pipelines/*.toml` describes."""

    name: str = "pipeline"
    classes: ClassesConfig = ClassesConfig()
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    train: TrainConfig = TrainConfig()
    student: StudentConfig = StudentConfig()
    generate: GenerateConfig = GenerateConfig()

    def __post_init__(self) -> None:
        if self.classes.preset == "custom" and len(self.classes.names) != self.model.num_classes:
            raise ConfigError(
                f"model.num_classes: {self.model.num_classes}, but classes.names lists "
                f"{len(self.classes.names)} classes"
            )
        if self.classes.preset == "cityscapes" and self.model.num_classes != 19:
            raise ConfigError(
                f"model.num_classes: {self.model.num_classes}, expected 19 for the cityscapes class preset"
            )

    def epochs(self, *, student: bool) -> int:
        """Training epochs of a teacher (``train.epochs``) or a student (``student.epochs`` when set)."""
        if student and self.student.epochs is not None:
            return self.student.epochs
        return self.train.epochs


# ---------------------------------------------------------------------------------------------------------
# loading


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(key: str, tp: Any, value: Any, base_dir: Path) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert it (lists -> tuples, str -> Path)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(key, arg, value, base_dir)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(
            errors[0]
            if len(errors) == 1
            else f"{key}: {value!r} matches none of {', '.join(_type_name(a) for a in args)}"
        )
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(repr(a) for a in allowed)}")
        return value
    if origin is dict:
        (key_tp, item_tp) = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table of {_type_name(key_tp)} = {_type_name(item_tp)}, got {value!r}")
        return {
            _convert(f"{key} (a key)", key_tp, k, base_dir): _convert(f"{key}.{k}", item_tp, v, base_dir)
            for k, v in value.items()
        }
    if origin is tuple:
        (item_tp, _ellipsis) = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list of {_type_name(item_tp)}, got {value!r}")
        return tuple(_convert(f"{key}[{i}]", item_tp, v, base_dir) for i, v in enumerate(value))
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table, got {value!r}")
        return _build(tp, value, base_dir, prefix=f"{key}.")
    if tp is Path:
        if not isinstance(value, str | Path) or str(value) == "":
            raise ConfigError(f"{key}: expected a path string, got {value!r}")
        path = Path(value).expanduser()
        return path if path.is_absolute() else (base_dir / path).resolve()
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise TypeError(f"config field {key} has an unsupported annotation {tp!r}")  # a bug in this module


def _build(cls: type, raw: dict[str, Any], base_dir: Path, prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]}: unknown key; expected one of {', '.join(sorted(fields))}")
    kwargs = {}
    for name, value in raw.items():
        key = f"{prefix}{name}"
        converted = _convert(key, hints[name], value, base_dir)
        _check_range(key, converted, fields[name].metadata)
        kwargs[name] = converted
    for name, f in fields.items():
        # defaults that are relative paths resolve like written ones: against the config file's folder
        if name in kwargs:
            continue
        if dataclasses.is_dataclass(f.default):
            kwargs[name] = _build(type(f.default), {}, base_dir, prefix=f"{prefix}{name}.")
        elif isinstance(f.default, Path | tuple) and "Path" in str(hints[name]):
            kwargs[name] = _convert(f"{prefix}{name}", hints[name], f.default, base_dir)
    # cross-field checks in __post_init__ raise ConfigError naming their own dotted keys
    return cls(**kwargs)


def from_dict(cls: type, raw: dict[str, Any], base_dir: Path | None = None, prefix: str = "") -> Any:
    """Build and check a config section from a plain dict (e.g. one stored in a checkpoint)."""
    return _build(cls, raw, base_dir or Path.cwd(), prefix=prefix)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``a.b=v``: ``v`` is read as a TOML value (``0.1``, ``true``, ``[0.5, 1.0]``) or else a string."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. train.lr=0.01")
    key, _, value = text.partition("=")
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"--set {text!r}: {key!r} is not a dotted key such as train.lr")
    return parts, _toml_or_string(value.strip())


def _toml_or_string(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _as_list(tp: Any, value: Any) -> Any:
    """A list field given the way its command-line flag is (``0.5,1.0``, or one value) becomes a list."""
    if typing.get_origin(tp) is not tuple:
        return value
    if isinstance(value, str):
        return [_toml_or_string(item.strip()) for item in value.split(",") if item.strip()]
    if isinstance(value, bool | int | float):
        return [value]
    return value


def _apply_override(raw: dict[str, Any], parts: list[str], value: Any, cls: type, cwd: Path) -> None:
    node, tp = raw, cls
    for depth, part in enumerate(parts):
        names = {f.name for f in dataclasses.fields(tp)} if dataclasses.is_dataclass(tp) else set()
        if part not in names:
            key = ".".join(parts[: depth + 1])
            raise ConfigError(f"--set {'.'.join(parts)}: unknown key {key!r}")
        field_tp = typing.get_type_hints(tp)[part]
        if depth == len(parts) - 1:
            node[part] = _absolutise_paths(field_tp, _as_list(field_tp, value), cwd)
            return
        if typing.get_origin(field_tp) is dict and depth == len(parts) - 2:
            # one entry of a table-valued key: --set generate.class_thresholds.road=0.9
            table = node.setdefault(part, {})
            if not isinstance(table, dict):
                raise ConfigError(f"--set {'.'.join(parts)}: {part!r} is not a table")
            table[parts[-1]] = value
            return
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {'.'.join(parts)}: {part!r} is not a table")
        tp = field_tp


def _absolutise_paths(tp: Any, value: Any, cwd: Path) -> Any:
    """Override values are relative to the working directory, not the config file."""
    text = str(tp)
    if "Path" in text and isinstance(value, str):
        path = Path(value).expanduser()
        return str(path if path.is_absolute() else (cwd / path).resolve())
    if "Path" in text and isinstance(value, list):
        return [_absolutise_paths(tp, v, cwd) for v in value]
    return value


def load_config(
    path: str | Path | None = None, overrides: typing.Sequence[str] = (), cls: type = PipelineConfig
) -> Any:
    """Load a TOML config (or the defaults when ``path`` is None), apply ``a.b=v`` overrides, check it all."""
    raw: dict[str, Any] = {}
    base_dir = Path.cwd()
    if path is not None:
        path = Path(path)
        try:
            with open(path, "rb") as fh:
                raw = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from None
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read config ({exc.strerror})") from None
        base_dir = path.resolve().parent
    overridden: dict[str, str] = {}  # dotted key -> the --set text that gave it
    for text in overrides:
        parts, value = parse_override(text)
        _apply_override(raw, parts, value, cls, Path.cwd())
        overridden[".".join(parts)] = text
    try:
        return _build(cls, raw, base_dir)
    except ConfigError as exc:
        raise ConfigError(_blame(str(exc), path, overridden)) from None


def _blame(message: str, path: Path | None, overridden: dict[str, str]) -> str:
    """Name where a bad value came from: the ``--set`` that gave its key, else the config file."""
    key = re.sub(r"\[\d+\]$", "", message.partition(":")[0])  # "generate.scales[0]" -> "generate.scales"
    if key in overridden:
        return f"--set {overridden[key]}: {message}"
    return f"{path}: {message}" if path is not None else message


def replace(config: Any, **changes: Any) -> Any:
    """``dataclasses.replace`` that checks every changed value as loading does (type, range, cross-field).

    A changed value that breaks a rule raises :class:`ConfigError` naming the dotted key (``generate.threshold``),
    so values from command-line flags or Python callers get exactly the checks a TOML file gets. Relative paths
    resolve against the working directory, as ``--set`` values do.
    """
    hints = typing.get_type_hints(type(config))
    fields = {f.name: f for f in dataclasses.fields(config)}
    prefix = _section_prefix(type(config))
    checked = {}
    for name, value in changes.items():
        if name not in fields:
            raise ConfigError(f"{prefix}{name}: unknown key; expected one of {', '.join(sorted(fields))}")
        key = f"{prefix}{name}"
        tp = hints[name]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp) and isinstance(value, tp):
            checked[name] = value  # a section object was checked when it was built
            continue
        converted = _convert(key, tp, value, Path.cwd())
        _check_range(key, converted, fields[name].metadata)
        checked[name] = converted
    return dataclasses.replace(config, **checked)


def _section_prefix(cls: type) -> str:
    """``"generate."`` for :class:`GenerateConfig` (the key prefix its values have in a pipeline file)."""
    for name, tp in typing.get_type_hints(PipelineConfig).items():
        if tp is cls:
            return f"{name}."
    return ""


# ---------------------------------------------------------------------------------------------------------
# dumping


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Path | str):
        return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_value(str(k))} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {value!r} as TOML")


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-friendly dict (paths as strings, tuples as lists); ``None`` values are kept."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        if isinstance(value, Path):
            return str(value)
        return value

    return plain(config)


def dump_toml(config: Any) -> str:
    """The resolved config as TOML (``None`` values are written as comments, since TOML has no null)."""
    lines: list[str] = []

    def section(obj: Any, prefix: str) -> None:
        nested = []
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                nested.append((f.name, value))
            elif value is None:
                lines.append(f"# {f.name} = (not set)")
            else:
                lines.append(f"{f.name} = {_toml_value(value)}")
        for name, value in nested:
            lines.append("")
            lines.append(f"[{prefix}{name}]")
            section(value, f"{prefix}{name}.")

    section(config, "")
    return "\n".join(lines) + "\n"
