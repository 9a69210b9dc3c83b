"""How well `review export`'s ranking finds the images a human would fix most (issue #14's check).

For every ``ok`` image of LABELS: its true error, the share of its pixels whose label differs from the city's
true fine label where that label is known (ignored pixels count as errors: a human has to label them), and
each ranking signal. Prints, per signal and for the combined score of ``--by``, the Spearman correlation
with the true error and how much of the true error the top ``--top`` hold (vs the best possible and vs the
mean of a random choice).

    python scripts/review_ranking_check.py LABELS CITY [--top 20] [--by confidence,disagreement]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from autolabel import labelset
from autolabel.classes import CITYSCAPES
from autolabel.data.io import read_label
from autolabel.review.export import stored_to_train_lut
from autolabel.review.names import SIGNALS
from autolabel.review.ranking import rank_rows, signal_value


def true_fine(city: Path, image: str) -> np.ndarray:
    """The true fine label (train ids) of a Cityscapes-layout image path."""
    path = Path(image)
    split, town = path.parent.parent.name, path.parent.name
    label = city / "gtFine" / split / town / path.name.replace("_leftImg8bit.png", "_gtFine_labelIds.png")
    return read_label(label, CITYSCAPES.label_to_train_lut())


def ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks (ties share their mean rank)."""
    order = np.argsort(values, kind="stable")
    out = np.empty(len(values), dtype=np.float64)
    sorted_values = values[order]
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and sorted_values[j + 1] == sorted_values[i]:
            j += 1
        out[order[i : j + 1]] = (i + j) / 2
        i = j + 1
    return out


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(ranks(a), ranks(b))[0, 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("labels", type=Path)
    parser.add_argument("city", type=Path)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--by", default="confidence,disagreement")
    args = parser.parse_args()
    meta = labelset.read_labelset(args.labels)
    rows = [r for r in labelset.read_manifest(args.labels).to_pylist() if r["status"] == "ok"]
    lut = stored_to_train_lut(meta, CITYSCAPES.ignore_index)
    error = {}
    for row in rows:
        label, truth = read_label(args.labels / row["label"], lut), true_fine(args.city, row["image"])
        known = truth != CITYSCAPES.ignore_index
        error[row["id"]] = float((label[known] != truth[known]).sum() / max(int(known.sum()), 1))
    ids = [r["id"] for r in rows]
    err = np.array([error[i] for i in ids])
    best = np.sort(err)[::-1][: args.top].sum()
    print(
        f"{len(ids)} images; true error mean {err.mean():.3f}; top {args.top} by true error hold {best / err.sum():.1%}"
    )
    print(f"a random {args.top} hold {args.top / len(ids):.1%} on average")
    for name in SIGNALS:
        if name == "rare":
            continue
        values = [signal_value(r, name) for r in rows]
        if any(v is None for v in values):
            print(f"{name:>13}: not recorded")
            continue
        ranking = rank_rows(rows, name)
        held = sum(error[r.id] for r in ranking.top(args.top)) / err.sum()
        print(
            f"{name:>13}: spearman {spearman(np.array(values, dtype=float), err):+.2f}; top {args.top} hold {held:.1%}"
        )
    ranking = rank_rows(rows, args.by)
    score = {r.id: r.score for r in ranking.ranked}
    held = sum(error[r.id] for r in ranking.top(args.top)) / err.sum()
    rho = spearman(np.array([score[i] for i in ids]), err)
    print(f"score of --by {args.by}: spearman {rho:+.2f}; top {args.top} hold {held:.1%}")


if __name__ == "__main__":
    main()
