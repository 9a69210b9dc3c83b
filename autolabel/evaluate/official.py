"""The official Cityscapes pixel-level evaluation (``cityscapesscripts``), run safely in this environment.

``cityscapesscripts`` 2.3 calls ``np.in1d``, which numpy 2.4 removed, in its instance-level score and pixel
accuracy; on a current numpy its full script crashes. :func:`official_scores` runs the script's own functions
(``getPrediction``, ``evaluateImgLists``) unchanged, with ``np.in1d`` supplied for the duration of the call
when numpy lacks it (:func:`numpy_in1d`: ``np.isin`` flattened, which is what ``in1d`` was), captures what
the script prints, and turns its ``printError`` exits into a :class:`~autolabel.errors.DataError`.

The script wants Cityscapes label-id PNGs (``evaluate --save-predictions DIR`` writes them to
``DIR/labelIds``) and ``*_gtFine_labelIds.png`` ground truth; the instance-level score (iIoU) also reads the
``*_gtFine_instanceIds.png`` next to each and is left out, with a warning, when they are not all there.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from autolabel.errors import AutolabelError, DataError

log = logging.getLogger(__name__)


def _in1d(ar1: Any, ar2: Any, assume_unique: bool = False, invert: bool = False, **kwargs: Any) -> np.ndarray:
    """numpy < 2.4's ``in1d``: ``isin`` of the flattened input (a 1-D result)."""
    return np.isin(np.asarray(ar1).ravel(), ar2, assume_unique=assume_unique, invert=invert, **kwargs)


@contextlib.contextmanager
def numpy_in1d() -> Iterator[None]:
    """``np.in1d`` exists inside the block (added only when numpy lacks it, and removed again after)."""
    added = not hasattr(np, "in1d")
    if added:
        np.in1d = _in1d  # type: ignore[attr-defined]
    try:
        yield
    finally:
        if added:
            del np.in1d  # type: ignore[attr-defined]


def _script() -> Any:
    try:
        from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as script
    except ImportError:
        raise AutolabelError("--official needs the cityscapesscripts package (pip install cityscapesscripts)") from None
    return script


def instance_files(ground_truth: Sequence[Path]) -> list[Path]:
    """The ``*_instanceIds.png`` next to each ``*_labelIds.png`` (what the instance-level score reads)."""
    return [Path(str(gt).replace("labelIds", "instanceIds")) for gt in ground_truth]


def official_scores(predictions: str | Path, ground_truth: Sequence[Path]) -> dict[str, Any]:
    """The official script's scores for the label-id PNGs under ``predictions`` against ``ground_truth``
    (``*_gtFine_labelIds.png`` files): IoU and iIoU per class and category, and their averages.

    Each ground-truth file's prediction is found the script's way: the one file under ``predictions`` named
    ``<city>_<seq>_<frame>*.png``.
    """
    script = _script()
    gts = [str(Path(p)) for p in ground_truth]
    if not gts:
        raise DataError("the official evaluation got no ground-truth files")
    instance_level = all(p.is_file() for p in instance_files([Path(g) for g in gts]))
    if not instance_level:
        log.warning(
            "no *_gtFine_instanceIds.png next to every label: the official instance-level score (iIoU) is left out"
        )
    args = copy.copy(script.args)
    args.predictionPath, args.predictionWalk = str(predictions), None
    args.evalInstLevelScore = instance_level
    args.evalPixelAccuracy = True
    args.JSONOutput, args.quiet, args.colorized = False, True, False
    args.bold = args.nocol = ""
    printed = io.StringIO()
    try:
        with numpy_in1d(), contextlib.redirect_stdout(printed):
            preds = [script.getPrediction(args, gt) for gt in gts]
            result = script.evaluateImgLists(preds, gts, args)
    except SystemExit:  # the script's printError: a message on stdout, then sys.exit(-1)
        message = " ".join(printed.getvalue().split()) or "the script stopped"
        raise DataError(f"official Cityscapes evaluation: {message}") from None
    return _summary(result, instance_level)


def _clean(value: float) -> float | None:
    return None if value != value else round(float(value), 6)


def _summary(result: dict[str, Any], instance_level: bool) -> dict[str, Any]:
    def scores(key: str) -> dict[str, float | None]:
        return {name: _clean(v) for name, v in result[key].items() if v == v}

    return {
        "miou": _clean(result["averageScoreClasses"]),
        "iiou": _clean(result["averageScoreInstClasses"]) if instance_level else None,
        "category_miou": _clean(result["averageScoreCategories"]),
        "category_iiou": _clean(result["averageScoreInstCategories"]) if instance_level else None,
        "iou": scores("classScores"),
        "iiou_per_class": scores("classInstScores") if instance_level else {},
        "category_iou": scores("categoryScores"),
    }


def official_table(scores: dict[str, Any]) -> str:
    """The official averages as a few lines of text."""

    def pct(value: float | None) -> str:
        return "  n/a" if value is None else f"{100 * value:5.1f}"

    lines = [f"{'official Cityscapes script':<27}  {'IoU':>5}  {'iIoU':>5}"]
    lines.append(f"{'classes':<27}  {pct(scores['miou'])}  {pct(scores['iiou'])}")
    lines.append(f"{'categories':<27}  {pct(scores['category_miou'])}  {pct(scores['category_iiou'])}")
    return "\n".join(lines)
