"""Self-describing checkpoint files, and importing the published NVIDIA weights.

A checkpoint is one ``torch.save`` file holding a plain dict::

    {"format": "autolabel-checkpoint", "format_version": 1, "model_config": {...ModelConfig as a dict...},
     "class_names": [...], "state_dict": {...}, "metadata": {...}}

Everything in it is a tensor or a plain Python value, so it loads with ``torch.load(weights_only=True)``: a
file holding pickled objects that could run code is refused before anything in it is executed.
"""

from __future__ import annotations

import hashlib
import io
import logging
import pickle
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor, nn

from autolabel.config import ModelConfig, from_dict, to_dict
from autolabel.errors import CheckpointError, ConfigError
from autolabel.fs import atomic_write_bytes
from autolabel.models.build import build_model
from autolabel.models.mscale import MultiScaleSegmenter

logger = logging.getLogger(__name__)

FORMAT = "autolabel-checkpoint"
FORMAT_VERSION = 1
NVIDIA_PREFIX = "module."


@dataclass(frozen=True)
class LoadedCheckpoint:
    """A loaded checkpoint: the model (eval mode, on the requested device) and what describes it."""

    model: MultiScaleSegmenter
    model_cfg: ModelConfig
    class_names: tuple[str, ...]
    metadata: dict[str, Any] = field(default_factory=dict)
    sha256: str = ""
    path: Path | None = None


def checkpoint_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a checkpoint file (its identity in label-set provenance)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read checkpoint ({exc.strerror or exc})") from None
    return digest.hexdigest()


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    model_cfg: ModelConfig,
    class_names: Sequence[str],
    metadata: Mapping[str, Any] | None = None,
) -> str:
    """Write ``model`` with its config, class names and ``metadata`` (plain values) atomically to ``path``.

    A DataParallel/DistributedDataParallel wrapper is unwrapped. Returns the file's SHA-256.
    """
    if len(class_names) != model_cfg.num_classes:
        raise CheckpointError(
            f"{path}: {len(class_names)} class names for a model with {model_cfg.num_classes} classes"
        )
    if isinstance(model, nn.DataParallel | nn.parallel.DistributedDataParallel):
        model = model.module
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_config": to_dict(model_cfg),
        "class_names": [str(name) for name in class_names],
        "state_dict": {key: value.detach().cpu() for key, value in model.state_dict().items()},
        "metadata": _plain(dict(metadata or {}), "metadata"),
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    atomic_write_bytes(path, data)
    logger.info("wrote checkpoint %s (%.1f MB)", path, len(data) / 1e6)
    return hashlib.sha256(data).hexdigest()


def load_checkpoint(
    path: str | Path, device: str | torch.device = "cpu", expected_num_classes: int | None = None
) -> LoadedCheckpoint:
    """Load a checkpoint written by :func:`save_checkpoint`; the model is built, filled and put in eval mode.

    Raises :class:`CheckpointError` for a missing, truncated, unsafe or foreign file, a class count other than
    ``expected_num_classes``, or a state dict that does not fit the model its config describes.
    """
    path = Path(path)
    data = _read_bytes(path)
    payload = _safe_load(data, path)
    _check_format(payload, path)
    model_cfg = _model_config(payload["model_config"], path)
    class_names = _class_names(payload["class_names"], model_cfg, path)
    if expected_num_classes is not None and len(class_names) != expected_num_classes:
        raise CheckpointError(
            f"{path}: the checkpoint predicts {len(class_names)} classes, expected {expected_num_classes}"
        )
    model = build_model(model_cfg)
    load_state_dict_checked(model, payload["state_dict"], source=path)
    metadata = payload.get("metadata") or {}
    return LoadedCheckpoint(
        model=model.to(device).eval(),
        model_cfg=model_cfg,
        class_names=class_names,
        metadata=dict(metadata),
        sha256=hashlib.sha256(data).hexdigest(),
        path=path,
    )


def load_state_dict_checked(model: nn.Module, state_dict: Any, source: str | Path) -> None:
    """``model.load_state_dict`` after checking every key, shape, dtype and that every value is finite; the
    first problem is named."""
    if not isinstance(state_dict, Mapping):
        raise CheckpointError(f"{source}: the state dict is a {type(state_dict).__name__}, expected a dict")
    expected = model.state_dict()
    missing = [key for key in expected if key not in state_dict]
    if missing:
        raise CheckpointError(
            f"{source}: key {missing[0]!r} is missing from the checkpoint "
            f"({len(missing)} of {len(expected)} keys missing)"
        )
    unexpected = [key for key in state_dict if key not in expected]
    if unexpected:
        raise CheckpointError(
            f"{source}: unexpected key {unexpected[0]!r} in the checkpoint "
            f"({len(unexpected)} keys the model does not have)"
        )
    for key, want in expected.items():
        got = state_dict[key]
        if not isinstance(got, Tensor):
            raise CheckpointError(f"{source}: {key!r} is a {type(got).__name__}, expected a tensor")
        if got.shape != want.shape or got.dtype != want.dtype:
            raise CheckpointError(
                f"{source}: {key!r} has shape {tuple(got.shape)} ({got.dtype}) in the "
                f"checkpoint, the model expects {tuple(want.shape)} ({want.dtype})"
            )
    _check_finite(state_dict, expected, source)
    model.load_state_dict(state_dict, strict=True)


def _check_finite(state_dict: Mapping[str, Tensor], expected: Mapping[str, Tensor], source: str | Path) -> None:
    """Every floating-point parameter and buffer finite, else a :class:`CheckpointError` naming the first bad
    one: a diverged run's NaN weights would label every pixel "ignore" without any other sign."""
    for key in expected:
        value = state_dict[key]
        if not (value.is_floating_point() or value.is_complex()):
            continue
        bad = int((~torch.isfinite(value)).sum())
        if bad:
            kinds = [name for name, mask in (("NaN", torch.isnan(value)), ("Inf", torch.isinf(value))) if mask.any()]
            raise CheckpointError(
                f"{source}: tensor {key!r} holds {bad} non-finite value(s) ({'/'.join(kinds)}) of {value.numel()}; "
                "the weights are unusable (a diverged training run?)"
            )


def import_nvidia_checkpoint(
    src: str | Path, dst: str | Path, model_cfg: ModelConfig, class_names: Sequence[str]
) -> str:
    """Convert a published NVIDIA checkpoint (``{'state_dict': ...}``, keys maybe prefixed ``module.``).

    Every key and shape is checked against the model ``model_cfg`` describes (the published teacher is
    ``arch = "hrnet_ocr"``, ``width = "w48"``, hierarchical). Writes our format to ``dst``; returns its
    SHA-256.
    """
    src = Path(src)
    data = _read_bytes(src)
    # released checkpoints may carry numpy scalars (e.g. the best mIoU) next to the weights
    # __reduce__()[0] is numpy's scalar constructor (the stubs, from object.__reduce__, also allow a str)
    scalar = cast(Callable[..., Any], np.float64(0).__reduce__()[0])
    with torch.serialization.safe_globals([scalar, np.dtype, type(np.dtype(np.float64))]):
        payload = _safe_load(data, src)
    state_dict = payload.get("state_dict", payload) if isinstance(payload, Mapping) else payload
    if not isinstance(state_dict, Mapping) or not state_dict:
        raise CheckpointError(f"{src}: no state dict found (expected a dict with a 'state_dict' entry)")
    if all(key.startswith(NVIDIA_PREFIX) for key in state_dict):
        state_dict = {key[len(NVIDIA_PREFIX) :]: value for key, value in state_dict.items()}
    model = build_model(model_cfg)
    load_state_dict_checked(model, state_dict, source=src)
    metadata = {"imported_from": str(src), "source_sha256": hashlib.sha256(data).hexdigest()}
    return save_checkpoint(dst, model, model_cfg, class_names, metadata=metadata)


# ---------------------------------------------------------------------------------------------------------
# helpers


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint file not found") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read checkpoint ({exc.strerror or exc})") from None


def _safe_load(data: bytes, path: Path) -> Any:
    """``torch.load(weights_only=True)``: tensors and plain values only, so no code in the file can run."""
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "global" in str(exc).lower():
            raise CheckpointError(
                f"{path}: refused to load: the file contains pickled Python objects that "
                "could run code (only tensors and plain values are allowed)"
            ) from None
        raise CheckpointError(f"{path}: not a readable checkpoint (corrupt or not a torch file)") from None
    except Exception as exc:  # torch raises many types for a damaged file; all mean the same
        reason = str(exc).split(". ")[0] or type(exc).__name__
        raise CheckpointError(
            f"{path}: not a readable checkpoint, the file is truncated or corrupt ({reason})"
        ) from None


def _check_format(payload: Any, path: Path) -> None:
    if not isinstance(payload, Mapping) or payload.get("format") != FORMAT:
        hint = (
            " (a published NVIDIA checkpoint? convert it with `autolabel import-checkpoint`)"
            if isinstance(payload, Mapping) and "state_dict" in payload
            else ""
        )
        raise CheckpointError(f"{path}: not an autolabel checkpoint{hint}")
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version!r} is not supported "
            f"(this autolabel reads versions <= {FORMAT_VERSION})"
        )
    for key in ("model_config", "class_names", "state_dict"):
        if key not in payload:
            raise CheckpointError(f"{path}: the checkpoint has no {key!r} entry")


def _model_config(raw: Any, path: Path) -> ModelConfig:
    if not isinstance(raw, Mapping):
        raise CheckpointError(f"{path}: 'model_config' is not a table")
    try:
        return from_dict(ModelConfig, dict(raw), path.parent, prefix="model.")
    except ConfigError as exc:
        raise CheckpointError(f"{path}: bad model config in the checkpoint: {exc}") from None


def _class_names(raw: Any, model_cfg: ModelConfig, path: Path) -> tuple[str, ...]:
    if not isinstance(raw, list | tuple) or not all(isinstance(name, str) for name in raw):
        raise CheckpointError(f"{path}: 'class_names' is not a list of strings")
    if len(raw) != model_cfg.num_classes:
        raise CheckpointError(f"{path}: {len(raw)} class names for a model with {model_cfg.num_classes} classes")
    return tuple(raw)


def _plain(value: Any, where: str) -> Any:
    """``value`` as ``weights_only`` loading accepts it (paths -> str, tuples -> lists, numpy -> Python)."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, Tensor):
        return value
    # exact builtins: a subclass such as np.float64 would be pickled as itself and refused on load
    for plain_type in (bool, int, float, str):
        if isinstance(value, plain_type):
            return plain_type(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    raise TypeError(f"{where}: {type(value).__name__} cannot be stored in a checkpoint (plain values only)")
