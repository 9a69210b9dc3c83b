"""autolabel: auto-labelling for semantic segmentation with hierarchical multi-scale attention teachers.

The public API is a handful of functions named after the commands (see :mod:`autolabel.api` and
``docs/api.md``)::

    import autolabel

    cfg = autolabel.load_config("pipelines/demo.toml")
    result = autolabel.generate_labels("teacher.pt", "folder:/data/images", "/data/labels", config=cfg)

They are imported on first use, so ``import autolabel`` (and ``autolabel --help``) stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from autolabel.errors import AutolabelError

__version__ = "0.1.0"

__all__ = [
    "AutolabelError",
    "__version__",
    "audit_labels",
    "diff_labelsets",
    "evaluate_checkpoint",
    "evaluate_predictions",
    "generate_labels",
    "load_config",
    "plan_labels",
    "read_labelset",
    "read_manifest",
    "review_export",
    "review_import",
    "run_rounds",
    "train_student",
    "train_teacher",
    "verify_labels",
]

if TYPE_CHECKING:
    from autolabel.api import (
        audit_labels,
        diff_labelsets,
        evaluate_checkpoint,
        evaluate_predictions,
        generate_labels,
        load_config,
        plan_labels,
        read_labelset,
        read_manifest,
        review_export,
        review_import,
        run_rounds,
        train_student,
        train_teacher,
        verify_labels,
    )


def __getattr__(name: str) -> Any:
    """The API functions, imported from :mod:`autolabel.api` on first use (it pulls in torch)."""
    if name in __all__:
        from autolabel import api

        return getattr(api, name)
    raise AttributeError(f"module 'autolabel' has no attribute {name!r}")
