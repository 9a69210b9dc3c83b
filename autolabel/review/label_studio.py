"""Label Studio: tasks with brush pre-annotations and the labelling config, and its JSON export read back.

The package::

    labeling_config.xml   the project's labelling interface: an Image and one BrushLabels with every class
    tasks.json            one task per image: data.image (a URL), data.autolabel_* (id, key, label set, rank,
                          score) and one prediction (model_version "autolabel <label-set id>", score = mean
                          confidence) holding one brush result per class present
    images/<key>.<ext>    the images; data.image is ``--image-url`` + the file name (default: Label Studio's
                          local-files URL for a document root at the package folder)

Ignored pixels are in no brush. Label Studio's JSON export lists the tasks with their ``annotations``; each
task's latest annotation that was not cancelled is its correction (later brushes paint over earlier ones;
pixels in no brush are unlabelled). Tasks without an annotation were not reviewed and are left alone.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlparse
from xml.sax.saxutils import quoteattr

import numpy as np

from autolabel.classes import ClassSet
from autolabel.errors import ReviewError
from autolabel.fs import atomic_write_bytes
from autolabel.review import rle
from autolabel.review.package import Correction, ExportItem, class_lookup, hex_color, key_of_file, normalise_name

CONFIG_FILE = "labeling_config.xml"
TASKS_FILE = "tasks.json"
IMAGES_DIR = "images"
FROM_NAME, TO_NAME = "label", "image"  # the BrushLabels and Image tag names of the config


def labeling_config(classes: ClassSet) -> str:
    """The labelling interface: the image and a brush per class, in the class colours."""
    labels = "\n".join(
        f"    <Label value={quoteattr(n)} background={quoteattr(hex_color(c))}/>"
        for n, c in zip(classes.names, classes.colors, strict=True)
    )
    return (
        "<View>\n"
        f'  <Image name="{TO_NAME}" value="$image" zoom="true" zoomControl="true"/>\n'
        f'  <BrushLabels name="{FROM_NAME}" toName="{TO_NAME}">\n{labels}\n  </BrushLabels>\n'
        "</View>\n"
    )


def brush_results(labels: np.ndarray, classes: ClassSet) -> list[dict[str, Any]]:
    """One brushlabels result per class present in a train-id map (ignored pixels are in none)."""
    height, width = labels.shape
    present = [int(c) for c in np.unique(labels) if c < classes.num_classes]
    return [
        {
            "id": f"autolabel-{c}",
            "type": "brushlabels",
            "from_name": FROM_NAME,
            "to_name": TO_NAME,
            "original_width": int(width),
            "original_height": int(height),
            "image_rotation": 0,
            "value": {"format": "rle", "rle": rle.encode_mask(labels == c), "brushlabels": [classes.names[c]]},
        }
        for c in present
    ]


def write_label_studio(
    staging: Path, items: Sequence[ExportItem], classes: ClassSet, labelset_id: str, image_url: str
) -> dict[str, dict[str, str]]:
    """Write the package's files into ``staging``; returns key -> {"image": path, "label": path}."""
    atomic_write_bytes(staging / CONFIG_FILE, labeling_config(classes).encode("utf-8"))
    tasks, files = [], {}
    for item in items:
        name = f"{item.key}{item.image_suffix}"
        item.place_image(staging / IMAGES_DIR / name)
        tasks.append(
            {
                "data": {
                    "image": image_url + quote(name),
                    "autolabel_id": item.id,
                    "autolabel_key": item.key,
                    "autolabel_labelset": labelset_id,
                    "autolabel_rank": item.rank,
                    "autolabel_score": round(item.score, 6),
                },
                "predictions": [
                    {
                        "model_version": f"autolabel {labelset_id}",
                        "score": None if item.mean_confidence is None else round(item.mean_confidence, 6),
                        "result": brush_results(item.labels(), classes),
                    }
                ],
            }
        )
        files[item.key] = {"image": f"{IMAGES_DIR}/{name}", "label": TASKS_FILE}
    atomic_write_bytes(staging / TASKS_FILE, json.dumps(tasks).encode("utf-8"))
    return files


# ---------------------------------------------------------------------------------------------------------
# reading Label Studio's JSON export


def _tasks(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ReviewError(f"{path}: not found") from None
    except (OSError, ValueError) as exc:
        raise ReviewError(f"{path}: not a JSON file ({exc})") from None
    if isinstance(data, dict) and "data" in data:
        data = [data]
    if not isinstance(data, list) or not all(isinstance(t, dict) and "data" in t for t in data):
        raise ReviewError(f"{path}: expected Label Studio's JSON export (a list of tasks with 'data')")
    return data


def _latest_annotation(task: dict[str, Any]) -> dict[str, Any] | None:
    kept = [a for a in task.get("annotations") or [] if isinstance(a, dict) and not a.get("was_cancelled")]
    if not kept:
        return None
    return max(kept, key=lambda a: (str(a.get("updated_at") or a.get("created_at") or ""), a.get("id") or 0))


def _task_key(data: dict[str, Any]) -> str | None:
    if data.get("autolabel_key"):
        return str(data["autolabel_key"])
    url = data.get("image")
    if not isinstance(url, str):
        return None
    parsed = urlparse(url)
    path = unquote(parsed.query.partition("d=")[2] or parsed.path)  # local-files URLs carry the path in ?d=
    return key_of_file(path, ()) if path else None


def read_label_studio(
    path: Path, classes: ClassSet, labelset_id: str, sizes: dict[str, tuple[int, int]]
) -> list[Correction]:
    """The corrected label maps of a Label Studio JSON export.

    ``sizes`` (image id -> (height, width)) gives the size of a correction with no brush at all.
    """
    lookup = class_lookup(classes)
    out = []
    for number, task in enumerate(_tasks(path), start=1):
        data = task.get("data") or {}
        where = f"{path} task {task.get('id', f'#{number}')}"
        owner = data.get("autolabel_labelset")
        if owner is not None and owner != labelset_id:
            raise ReviewError(f"{where}: made for label set {owner}, not for this label set ({labelset_id})")
        annotation = _latest_annotation(task)
        if annotation is None:
            continue
        image_id = data.get("autolabel_id")
        key = _task_key(data)
        brushes = [r for r in annotation.get("result") or [] if str(r.get("type", "")).lower() == "brushlabels"]
        size = _size(brushes, where) or sizes.get(str(image_id))
        if size is None:
            raise ReviewError(f"{where}: no brush and no known image size; cannot tell what was corrected")
        labels = np.full(size, classes.ignore_index, dtype=np.uint8)
        for result in brushes:
            value = result.get("value") or {}
            if value.get("format", "rle") != "rle" or "rle" not in value:
                raise ReviewError(f"{where}: brush result {result.get('id')!r} is not in Label Studio's rle format")
            for name in value.get("brushlabels") or []:
                if normalise_name(str(name)) not in lookup:
                    raise ReviewError(f"{where}: unknown class {name!r}; the label set has no such class")
            names = value.get("brushlabels") or []
            if not names:
                continue
            mask = rle.decode_mask(value["rle"], *size)
            labels[mask] = lookup[normalise_name(str(names[-1]))]
        out.append(
            Correction(labels=labels, where=where, key=key, image_id=None if image_id is None else str(image_id))
        )
    if not out:
        raise ReviewError(f"{path}: no task has an annotation; nothing was corrected")
    return out


def _size(brushes: Sequence[dict[str, Any]], where: str) -> tuple[int, int] | None:
    sizes = {(int(r["original_height"]), int(r["original_width"])) for r in brushes if "original_width" in r}
    if len(sizes) > 1:
        raise ReviewError(f"{where}: brush results disagree about the image size: {sorted(sizes)}")
    return sizes.pop() if sizes else None
