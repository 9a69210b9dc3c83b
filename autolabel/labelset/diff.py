"""``autolabel diff A B``: what changed between two label sets over the same images.

Both sets are read image by image (matched by manifest id, ok rows only) into one confusion matrix of
pixel counts, A's label (rows) -> B's label (columns), with ignore as the last row and column. Everything
else follows from that matrix, per class ``c`` (``C`` = the ignore bin):

- gained: ``M[C, c]``, pixels A left unlabelled that B labels ``c``;
- lost: ``M[c, C]``, pixels A labelled ``c`` that B leaves unlabelled;
- flipped from / to: pixels whose class changed, ``c`` -> another class / another class -> ``c``;
- the changed share: pixels where A and B differ (any of the above) over all pixels of the common images.

The images that changed most are ranked by their own changed share. A label set written with label ids
(``--label-ids``) is read back as train ids, so two sets compare whatever values they store.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from autolabel.data.io import read_label
from autolabel.errors import LabelSetError
from autolabel.labelset.manifest import read_manifest
from autolabel.labelset.meta import read_labelset

log = logging.getLogger(__name__)

IGNORE = "ignore"
LISTED_IDS = 20  # ids listed in the JSON for images found in only one of the two sets


def _to_train_lut(meta: dict[str, Any]) -> np.ndarray | None:
    """stored value -> train id when the set stores dataset label ids, else None (it stores train ids)."""
    if not meta.get("label_ids"):
        return None
    lut = np.full(256, meta["ignore_index"], dtype=np.uint8)
    for train_id, label_id in enumerate(meta["label_ids"]):
        lut[label_id] = train_id
    return lut


def image_confusion(a: np.ndarray, b: np.ndarray, num_classes: int) -> np.ndarray:
    """(C+1, C+1) pixel counts of two (H, W) train-id label maps; values >= C (ignore) go to the last bin."""
    if a.shape != b.shape:
        raise ValueError(f"label maps differ in shape: {a.shape} vs {b.shape}")
    c = num_classes
    flat = np.minimum(a, c).astype(np.int64).ravel() * (c + 1) + np.minimum(b, c).astype(np.int64).ravel()
    return np.bincount(flat, minlength=(c + 1) ** 2).reshape(c + 1, c + 1)


def transitions(matrix: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class gained / lost / flipped-from / flipped-to counts of a (C+1, C+1) confusion matrix."""
    c = matrix.shape[0] - 1
    classes = matrix[:c, :c]
    diag = np.diag(classes)
    return {
        "pixels_a": matrix[:c].sum(1),
        "pixels_b": matrix[:, :c].sum(0),
        "gained": matrix[c, :c].copy(),
        "lost": matrix[:c, c].copy(),
        "flipped_from": classes.sum(1) - diag,
        "flipped_to": classes.sum(0) - diag,
    }


def _share(num: int | np.integer, den: int | np.integer) -> float | None:
    return round(float(num) / float(den), 6) if den else None


def _side(out: Path, meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "path": str(out),
        "labelset_id": meta["labelset_id"],
        "teacher_sha256": meta.get("teacher_sha256"),
        "threshold": meta.get("threshold"),
    }


def _check_same_classes(a: Path, meta_a: dict[str, Any], b: Path, meta_b: dict[str, Any]) -> list[str]:
    names_a, names_b = list(meta_a.get("classes") or ()), list(meta_b.get("classes") or ())
    if names_a != names_b:
        raise LabelSetError(
            f"{b}: its classes ({len(names_b)}: {', '.join(names_b[:4])}, ...) differ from those of {a} "
            f"({len(names_a)}: {', '.join(names_a[:4])}, ...); a diff needs the same class list"
        )
    return names_a


def diff_labelsets(
    a: str | Path,
    b: str | Path,
    *,
    top: int = 10,
    max_pixels: int | None = None,
    on_total: Callable[[int], None] | None = None,
    on_image: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Compare the label sets in ``a`` and ``b`` over the images both labelled; returns the diff as a dict.

    Args:
        a, b: label-set folders with the same class list.
        top: how many of the most-changed images to list.
        max_pixels: refuse label files larger than this (the config's ``data.max_image_pixels``).
        on_total: called once with the number of images compared.
        on_image: called with 1 after each image.
    """
    a, b = Path(a), Path(b)
    meta_a, meta_b = read_labelset(a), read_labelset(b)
    names = _check_same_classes(a, meta_a, b, meta_b)
    rows_a = {r["id"]: r for r in read_manifest(a).to_pylist()}
    rows_b = {r["id"]: r for r in read_manifest(b).to_pylist()}
    common = sorted(rows_a.keys() & rows_b.keys())
    if not common:
        raise LabelSetError(f"{a} and {b} have no labelled image in common (matched by image id)")
    if on_total is not None:
        on_total(len(common))
    lut_a, lut_b = _to_train_lut(meta_a), _to_train_lut(meta_b)
    c = len(names)
    total = np.zeros((c + 1, c + 1), dtype=np.int64)
    per_image = []
    for image_id in common:
        path_a, path_b = a / rows_a[image_id]["label"], b / rows_b[image_id]["label"]
        label_a = read_label(path_a, lut_a, max_pixels)
        label_b = read_label(path_b, lut_b, max_pixels)
        if label_a.shape != label_b.shape:
            raise LabelSetError(
                f"{path_b}: {label_b.shape[1]}x{label_b.shape[0]}, but {path_a} is "
                f"{label_a.shape[1]}x{label_a.shape[0]}; are these label sets of the same images?"
            )
        matrix = image_confusion(label_a, label_b, c)
        total += matrix
        per_image.append((image_id, matrix))
        if on_image is not None:
            on_image(1)
    only_a, only_b = sorted(rows_a.keys() - rows_b.keys()), sorted(rows_b.keys() - rows_a.keys())
    if only_a or only_b:
        log.warning("%d images only in %s and %d only in %s are not compared", len(only_a), a, len(only_b), b)
    return {
        "a": _side(a, meta_a),
        "b": _side(b, meta_b),
        "images": len(common),
        "only_in_a": len(only_a),
        "only_in_b": len(only_b),
        "only_in_a_ids": only_a[:LISTED_IDS],
        "only_in_b_ids": only_b[:LISTED_IDS],
        **summary(total),
        "classes": _per_class(total, names),
        "confusion": {"labels": [*names, IGNORE], "matrix": total.tolist()},
        "top_images": _top_images(per_image, top),
    }


def summary(matrix: np.ndarray) -> dict[str, Any]:
    """Totals of a (C+1, C+1) confusion matrix: changed pixels and their kinds, as counts and shares."""
    c = matrix.shape[0] - 1
    pixels = int(matrix.sum())
    changed = pixels - int(np.trace(matrix))
    gained, lost = int(matrix[c, :c].sum()), int(matrix[:c, c].sum())
    flipped = changed - gained - lost
    both = int(matrix[:c, :c].sum())  # labelled in A and in B
    return {
        "pixels": pixels,
        "changed": changed,
        "changed_share": _share(changed, pixels),
        "gained": gained,
        "lost": lost,
        "flipped": flipped,
        "gained_share": _share(gained, pixels),
        "lost_share": _share(lost, pixels),
        "flipped_share": _share(flipped, pixels),
        "coverage_a": _share(pixels - int(matrix[c].sum()), pixels),
        "coverage_b": _share(pixels - int(matrix[:, c].sum()), pixels),
        # of the pixels both sets label, the share they label alike
        "agreement": _share(both - flipped, both),
    }


def _per_class(matrix: np.ndarray, names: list[str]) -> dict[str, dict[str, Any]]:
    parts = transitions(matrix)
    return {
        name: {key: int(values[i]) for key, values in parts.items()}
        | {"net_change": _share(int(parts["pixels_b"][i]) - int(parts["pixels_a"][i]), int(parts["pixels_a"][i]))}
        for i, name in enumerate(names)
    }


def _top_images(per_image: list[tuple[str, np.ndarray]], top: int) -> list[dict[str, Any]]:
    """The ``top`` images with the largest changed share (ties: by id), with their own totals."""
    ranked = []
    for image_id, matrix in per_image:
        s = summary(matrix)
        ranked.append((-(s["changed_share"] or 0.0), image_id, s))
    ranked.sort(key=lambda t: (t[0], t[1]))
    keys = ("pixels", "changed", "changed_share", "gained", "lost", "flipped")
    return [{"id": image_id, **{k: s[k] for k in keys}} for _, image_id, s in ranked[:top]]


# ---------------------------------------------------------------------------------------------------------
# the printed table


def _pct(value: float | None) -> str:
    return "  n/a" if value is None else f"{100 * value:5.1f}"


def diff_table(diff: dict[str, Any], *, matrix: bool = False, transitions_shown: int = 8) -> str:
    """The diff as plain text: totals, per-class counts, the largest class transitions, the top images;
    with ``matrix`` the whole confusion matrix too."""
    a, b = diff["a"], diff["b"]
    lines = [
        f"A: {a['path']} (label set {a['labelset_id']})",
        f"B: {b['path']} (label set {b['labelset_id']})",
        f"images compared: {diff['images']:,}"
        + (
            f" (only in A: {diff['only_in_a']:,}, only in B: {diff['only_in_b']:,})"
            if diff["only_in_a"] or diff["only_in_b"]
            else ""
        ),
        f"pixels changed: {_pct(diff['changed_share']).strip()}% of {diff['pixels']:,} "
        f"(gained {_pct(diff['gained_share']).strip()}%, lost {_pct(diff['lost_share']).strip()}%, "
        f"flipped {_pct(diff['flipped_share']).strip()}%)",
        f"coverage: A {_pct(diff['coverage_a']).strip()}% -> B {_pct(diff['coverage_b']).strip()}%; "
        f"agreement where both label: {_pct(diff['agreement']).strip()}%",
        "",
    ]
    rows = [(n, v) for n, v in diff["classes"].items() if v["pixels_a"] or v["pixels_b"]]
    width = max([len(n) for n, _ in rows] + [5])
    cols = ("pixels_a", "pixels_b", "gained", "lost", "flipped_from", "flipped_to")
    lines.append(f"{'class':<{width}} " + " ".join(f"{h:>12}" for h in (*cols, "net %")))
    for name, v in rows:
        net = "n/a" if v["net_change"] is None else f"{100 * v['net_change']:+.1f}"
        lines.append(f"{name:<{width}} " + " ".join(f"{v[k]:>12,}" for k in cols) + f" {net:>12}")
    lines += ["", "largest transitions A -> B (pixels):"]
    lines += [f"  {src} -> {dst}: {n:,}" for src, dst, n in largest_transitions(diff, transitions_shown)] or ["  none"]
    lines += ["", "images that changed most:"]
    lines += [f"  {r['id']}: {_pct(r['changed_share']).strip()}%" for r in diff["top_images"]] or ["  none"]
    if matrix:
        lines += ["", _matrix_text(diff)]
    return "\n".join(lines)


def largest_transitions(diff: dict[str, Any], n: int) -> list[tuple[str, str, int]]:
    """The ``n`` largest off-diagonal cells of the confusion matrix as (A label, B label, pixels)."""
    labels, matrix = diff["confusion"]["labels"], diff["confusion"]["matrix"]
    cells = [
        (labels[i], labels[j], count)
        for i, row in enumerate(matrix)
        for j, count in enumerate(row)
        if i != j and count > 0
    ]
    cells.sort(key=lambda t: -t[2])
    return cells[:n]


def _matrix_text(diff: dict[str, Any]) -> str:
    labels, matrix = diff["confusion"]["labels"], diff["confusion"]["matrix"]
    shown = [i for i in range(len(labels)) if any(matrix[i]) or any(row[i] for row in matrix)]
    width = max(len(labels[i]) for i in shown)
    cell = max(len(f"{v:,}") for row in matrix for v in row) + 1
    corner = "A \\ B"
    head = f"{corner:<{width}}" + "".join(f"{labels[j][: cell - 1]:>{cell}}" for j in shown)
    body = [f"{labels[i]:<{width}}" + "".join(f"{matrix[i][j]:>{cell},}" for j in shown) for i in shown]
    return "\n".join(["confusion matrix (rows A, columns B, pixels):", head, *body])
