"""The real clients of the review formats, run in the tools venv (.venv-review: datumaro, label-studio-sdk).

Never imports autolabel: it reads our packages the way CVAT (datumaro) and Label Studio (its SDK) do, and
writes a "corrected" export the way they would, so the tests check our formats against independent code.

    review_client.py dm FORMAT PACKAGE EDITS OUT RESULT
        datumaro imports PACKAGE (cityscapes | voc_segmentation), writes what it read into RESULT/
        (<item>.png: label names as indices into RESULT/names.json, 255 = no label), replaces the masks of
        the items EDITS/<item>.png names (indices into EDITS/names.json, 255 = none) and exports the
        dataset in the same format to OUT (the other items as read: a reviewer who accepts them)
    review_client.py ls TASKS EDITS OUT RESULT
        decodes every task's prediction with the SDK's brush decoder into RESULT/<autolabel_key>.png
        (indices into RESULT/names.json, read from labeling_config.xml beside TASKS), and writes OUT, a
        Label Studio JSON export whose annotations are EDITS/<key>.png where given, else the prediction
        decoded and encoded again with the SDK's encoder
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from PIL import Image

NONE = 255


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path)


def _load(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path), dtype=np.uint8)


def _edits(folder: Path) -> tuple[dict[str, np.ndarray], list[str]]:
    names = json.loads((folder / "names.json").read_text())
    return {p.stem: _load(p) for p in folder.glob("*.png")}, names


def datumaro_roundtrip(fmt: str, package: Path, edits_dir: Path, out: Path, result: Path) -> None:
    from datumaro.components.annotation import AnnotationType, Mask
    from datumaro.components.dataset import Dataset

    dataset = Dataset.import_from(str(package), fmt)
    labels = dataset.categories()[AnnotationType.label]
    names = [label.name for label in labels.items]
    result.mkdir(parents=True, exist_ok=True)
    (result / "names.json").write_text(json.dumps(names))
    edits, edit_names = _edits(edits_dir)
    for item in list(dataset):
        masks = [a for a in item.annotations if a.type == AnnotationType.mask]
        size = masks[0].image.shape if masks else item.media.data.shape[:2]
        read = np.full(size, NONE, dtype=np.uint8)
        for mask in masks:
            read[mask.image] = mask.label
        stem = item.id.split("/")[-1]
        _save(result / f"{stem}.png", read)
        if stem not in edits:
            continue
        edited = edits[stem]
        new = []
        for value in np.unique(edited):
            if value == NONE:
                continue
            label_id, _ = labels.find(edit_names[value])
            assert label_id is not None, f"no label {edit_names[value]!r} in the package's label map"
            new.append(Mask(image=edited == value, label=label_id))
        dataset.put(item.wrap(annotations=new))
    dataset.export(str(out), fmt, save_media=False, apply_colormap=True)


def label_studio_roundtrip(tasks_path: Path, edits_dir: Path, out: Path, result: Path) -> None:
    from label_studio_sdk.converter.brush import decode_rle, mask2rle

    config = ET.parse(tasks_path.parent / "labeling_config.xml").getroot()
    names = [label.get("value") for label in config.iter("Label")]
    result.mkdir(parents=True, exist_ok=True)
    (result / "names.json").write_text(json.dumps(names))
    edits, edit_names = _edits(edits_dir)
    tasks = json.loads(tasks_path.read_text())
    exported = []
    for number, task in enumerate(tasks, start=1):
        key = task["data"]["autolabel_key"]
        read = None
        for res in task["predictions"][0]["result"]:
            width, height = res["original_width"], res["original_height"]
            mask = np.reshape(decode_rle(res["value"]["rle"]), (height, width, 4))[:, :, 3]
            if read is None:
                read = np.full((height, width), NONE, dtype=np.uint8)
            read[mask > 128] = names.index(res["value"]["brushlabels"][0])
        _save(result / f"{key}.png", read)
        source, source_names = (edits[key], edit_names) if key in edits else (read, names)
        results = []
        for value in np.unique(source):
            if value == NONE:
                continue
            results.append(
                {
                    "id": f"r{number}-{value}",
                    "type": "brushlabels",
                    "from_name": "label",
                    "to_name": "image",
                    "original_width": int(source.shape[1]),
                    "original_height": int(source.shape[0]),
                    "image_rotation": 0,
                    "origin": "manual",
                    "value": {
                        "format": "rle",
                        "rle": mask2rle(((source == value) * 255).astype(np.uint8)),
                        "brushlabels": [source_names[value]],
                    },
                }
            )
        exported.append(
            {
                "id": number,
                "data": task["data"],
                "annotations": [
                    {"id": number, "result": results, "was_cancelled": False, "created_at": "2030-01-01T00:00:00Z"}
                ],
                "predictions": task["predictions"],
            }
        )
    out.write_text(json.dumps(exported))


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "dm":
        datumaro_roundtrip(args[0], *(Path(a) for a in args[1:]))
    elif command == "ls":
        label_studio_roundtrip(*(Path(a) for a in args))
    else:
        raise SystemExit(f"unknown command {command!r}")
