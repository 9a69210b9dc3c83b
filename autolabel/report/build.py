"""``autolabel report OUT``: one self-contained HTML page about a label set, pictures as files beside it.

The page and its pictures are built in a temporary folder next to the destination and moved into place at
the end, so a reader never sees half a report and an interrupted run leaves the previous report intact.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from autolabel.classes import ClassSet
from autolabel.data.io import encode_image_png, read_image, read_label
from autolabel.data.sources import Source
from autolabel.errors import AutolabelError, LabelSetError
from autolabel.fs import atomic_write_bytes, replace_dir, temp_sibling
from autolabel.labelset import confidence
from autolabel.labelset.manifest import quality_warnings
from autolabel.report import collect, html, plots, quality
from autolabel.report.diff import diff_section, read_diff
from autolabel.report.review import review_section

log = logging.getLogger(__name__)

REPORT_DIR = "report"
ASSETS = "assets"
PAGE = "index.html"


@dataclass(frozen=True)
class ReportOptions:
    """How much the report reads and shows."""

    worst: int = 12  # rows in the lowest-mean-confidence sheet
    thin: int = 8  # rows in the most-thin-structure-pixels sheet (where the high scale's weight shows)
    thin_classes: tuple[str, ...] = ("pole", "traffic light", "traffic sign", "person", "fence")
    sample: int = 12  # rows in the random sheet
    seed: int = 0  # of the random sheet
    thumb_width: int = 320  # px of every picture in the sheets
    reference_images: int = 300  # label files read per reference (coarse, fine) for the class shares
    coverage_images: int = 200  # confidence maps read for the coverage curve
    target_precision: float = 0.95  # when neither the calibration file nor labelset.json names one


@dataclass
class _Assets:
    """Writes pictures into the report's asset folder and hands back their relative links."""

    folder: Path

    def save(self, image: Image.Image, name: str) -> str:
        atomic_write_bytes(self.folder / ASSETS / name, encode_image_png(np.asarray(image.convert("RGB"))))
        return f"{ASSETS}/{name}"


def build_report(
    out: str | Path,
    dest: str | Path | None = None,
    *,
    evaluations: Mapping[str, Path] | None = None,
    audits: Mapping[str, Path] | None = None,
    diff: Path | None = None,
    fine_source: Source | None = None,
    classes: ClassSet | None = None,
    options: ReportOptions = ReportOptions(),
    on_step: Callable[[str], None] | None = None,
    review: Path | None = None,
    calibration: Path | None = None,
) -> Path:
    """Write the report of the label set in ``out`` to ``dest`` (default ``OUT/report``); returns the page.

    ``evaluations`` maps a column name to a JSON file as ``autolabel evaluate`` writes it, ``audits`` a row
    name to one of ``autolabel evaluate-labels`` (an audit of this label set also draws its accuracy per
    threshold next to the coverage curve). ``fine_source`` (a source description as in
    :mod:`autolabel.data.sources`) names the fine-labelled split to compare class shares with (default:
    the ``train`` split of a Cityscapes source). ``diff`` is a JSON of ``autolabel diff`` from a previous
    label set to this one (``rounds`` writes one per round), shown after the overview. ``review`` is a
    ``review.json`` of `autolabel review export`, whose selection gets its own section. ``calibration`` is a
    ``calibration.json`` of `autolabel calibrate`: its reliability diagram and per-class precision/coverage
    curves (an audit of this label set gives the curves instead when there is one), with the classes below
    the target precision marked. A banner on top warns of an all but unlabelled set, non-finite confidences
    and the classes below target.
    """
    out = Path(out)
    dest = Path(dest) if dest is not None else out / REPORT_DIR
    meta, manifest = collect.load_meta_and_manifest(out)
    classes = _check_classes(classes, meta)
    evals = [collect.read_evaluation(path, name) for name, path in (evaluations or {}).items()]
    checks = [collect.read_audit(path, name) for name, path in (audits or {}).items()]
    changes = read_diff(diff) if diff is not None else None
    calib = quality.read_calibration_json(calibration) if calibration is not None else None
    own_audit = next((a for a in checks if a.labelset_id == meta["labelset_id"] and a.classes), None)
    measured = quality.measure(meta, calib, own_audit, options.target_precision)
    step = on_step or (lambda name: None)
    staging = temp_sibling(dest)
    try:
        assets = _Assets(staging)
        sections = _sections(out, meta, manifest, classes, evals, checks, fine_source, options, assets, step)
        if measured is not None:
            sections.insert(1, quality.quality_section(measured, assets.save))
        if changes is not None:
            sections.insert(1, diff_section(changes))
        if review is not None:
            sheets = next((i for i, part in enumerate(sections) if 'id="worst"' in part), len(sections))
            sections.insert(sheets, review_section(review, dest, meta))  # before the picture sheets
        sections.insert(0, html.banner(quality.banner_lines(quality_warnings(manifest), measured)))
        step("page")
        atomic_write_bytes(staging / PAGE, _page(meta, sections).encode("utf-8"))
        replace_dir(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("report written to %s", dest / PAGE)
    return dest / PAGE


def _check_classes(classes: ClassSet | None, meta: dict[str, Any]) -> ClassSet:
    if classes is None:
        return collect.classes_of(meta)
    if tuple(classes.names) != tuple(meta["classes"]):
        raise LabelSetError(
            f"the given class list ({classes.num_classes} classes) is not the label set's "
            f"({len(meta['classes'])} classes: {', '.join(meta['classes'][:4])}, ...)"
        )
    return classes


def _page(meta: dict[str, Any], sections: Sequence[str]) -> str:
    scales = "/".join(f"{s:g}" for s in meta["scales"])
    subtitle = (
        f"label set {meta['labelset_id']} · teacher {meta['teacher_sha256'][:12]} · scales {scales}"
        f"{' + flip' if meta.get('flip') else ''} · threshold {meta['threshold']:g} · "
        f"code {meta.get('code_version', '?')}"
    )
    return html.page("Auto-label report", subtitle, sections)


# ---------------------------------------------------------------------------------------------------------
# the sections


def _sections(
    out: Path,
    meta: dict[str, Any],
    manifest: Any,
    classes: ClassSet,
    evals: Sequence[Any],
    checks: Sequence[collect.Audit],
    fine_source: Source | None,
    options: ReportOptions,
    assets: _Assets,
    step: Callable[[str], None],
) -> list[str]:
    rows = [r for r in manifest.to_pylist() if r["status"] == "ok"]
    step("overview")
    sections = [_overview_section(out, meta, manifest, classes)]
    if evals:
        sections.append(_evaluation_section(evals, classes))
    if checks:
        sections.append(_audit_section(checks))
    step("reference labels")
    source = collect.source_data(meta, fine_source)
    sections.append(_shares_section(manifest, rows, classes, source, options, assets))
    step("confidence")
    own = next((a for a in checks if a.labelset_id == meta["labelset_id"] and a.sweep), None)
    sections.append(_coverage_section(out, rows, meta, classes, options, assets, own))
    worst = collect.worst_rows(rows, options.worst)
    thin = collect.thin_rows(rows, classes.names, options.thin_classes, options.thin, exclude=worst)
    randoms = collect.random_rows(rows, options.sample, options.seed, exclude=[*worst, *thin])
    step("sheets")
    sheet_ctx = _SheetContext(out, meta, classes, source, options.thumb_width, assets)
    sections.append(
        html.section(
            f"Lowest mean confidence ({len(worst)})",
            _sheet_intro(meta, classes, assets),
            _sheet(sheet_ctx, worst, "worst"),
            anchor="worst",
        )
    )
    if thin:
        thin_names = ", ".join(c for c in options.thin_classes if c in classes.names)
        sections.append(
            html.section(
                f"Most thin-structure pixels ({len(thin)})",
                html.paragraph(
                    f"The images whose auto labels have the most pixels of {thin_names}: where the scales' "
                    "weights differ most (fine structures take their prediction from the high scale, "
                    "large regions from the low one)."
                ),
                _sheet(sheet_ctx, thin, "thin"),
                anchor="thin",
            )
        )
    sections.append(
        html.section(
            f"Random sample ({len(randoms)}, seed {options.seed})",
            _sheet(sheet_ctx, randoms, "random"),
            anchor="random",
        )
    )
    if source.notes:
        sections.append(html.section("Notes", *(html.paragraph(n, "note") for n in source.notes)))
    return sections


def _overview_section(out: Path, meta: dict[str, Any], manifest: Any, classes: ClassSet) -> str:
    ov = collect.overview(out, manifest, classes.names)
    facts = [
        ("images", f"{ov.images:,}"),
        ("labelled", f"{ov.ok:,}"),
        ("errors", f"{len(ov.errors):,}"),
        ("pixels with a label (p > threshold)", f"{100 * ov.labelled_fraction:.1f}%"),
        ("mean confidence (max softmax)", f"{ov.mean_confidence:.3f}"),
        ("teacher time, all images", _duration(ov.seconds_total)),
        ("per image", f"{1000 * ov.seconds_per_image:.0f} ms"),
        ("label PNGs", f"{ov.label_bytes / 1e6:.2f} MB ({ov.label_bytes / 1e3 / max(ov.ok, 1):.1f} KB/image)"),
        ("shards", ", ".join(ov.shards) or "-"),
        ("source", _source_text(meta.get("source") or {})),
    ]
    parts = [html.table(None, facts)]
    if ov.errors:
        shown = ov.errors[:50]
        parts.append(
            html.paragraph(
                f"{len(ov.errors)} image(s) could not be labelled{' (first 50)' if len(ov.errors) > 50 else ''}:",
                "note",
            )
        )
        parts.append(html.table(["image id", "error"], shown))
    return html.section("Overview", *parts, anchor="overview")


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _source_text(source: dict[str, Any]) -> str:
    if not source:
        return "-"
    return " ".join(str(source[k]) for k in ("layout", "root", "split") if source.get(k))


def _evaluation_section(evals: Sequence[Any], classes: ClassSet) -> str:
    # classes no evaluation has a value for (absent from its ground truth and predictions) are left out
    names = [n for n in classes.names if any(e.iou.get(n) is not None for e in evals)]
    rows = [[name] + [_pct(e.iou.get(name)) for e in evals] for name in names]
    rows.append(["mIoU"] + [_pct(e.miou) for e in evals])
    headers = ["class"] + [e.name for e in evals]
    sources = html.paragraph("From: " + "; ".join(f"{e.name} = {e.source}" for e in evals), "muted")
    return html.section(
        "Evaluation (IoU %)", html.table(headers, rows, [False] + [True] * len(evals)), sources, anchor="evaluation"
    )


def _share_series(
    manifest: Any, rows: Sequence[dict[str, Any]], classes: ClassSet, source: collect.SourceData, options: ReportOptions
) -> tuple[list[tuple[str, np.ndarray]], list[str]]:
    """(name, per-class shares) of the auto labels, the same images' coarse labels and the fine split (as found)."""
    lut = classes.label_to_train_lut()
    auto = collect.auto_class_counts(manifest, classes.num_classes)
    series = [("auto labels", collect.shares_from_counts(auto))]
    notes = [f"auto labels: all {len(rows):,} labelled images"]
    coarse = [
        source.samples[r["id"]].coarse
        for r in rows
        if r["id"] in source.samples and source.samples[r["id"]].coarse is not None
    ]
    fine = [s.label for s in source.fine]
    for name, paths, what in (
        ("human coarse (same images)", coarse, "of the same images"),
        ("fine (training split)", fine, "fine training images"),
    ):
        if paths:
            picked = collect.spread(paths, options.reference_images)
            counts = collect.label_class_counts(picked, lut, classes.num_classes)
            series.append((name, collect.shares_from_counts(counts)))
            notes.append(f"{name.split(' (')[0]}: {len(picked):,} {what}")
    return series, notes


def _audit_section(checks: Sequence[collect.Audit]) -> str:
    rows = [[a.name, a.reference, f"{a.images:,}", _pct(a.coverage), _pct(a.accuracy), _pct(a.miou)] for a in checks]
    return html.section(
        "Label sets vs human labels",
        html.paragraph(
            "Coverage: share of pixels that carry a label. Accuracy and mIoU: on the pixels both "
            "the label set and the reference label (`autolabel evaluate-labels`)."
        ),
        html.table(
            ["label set", "reference", "images", "coverage %", "accuracy %", "mIoU %"],
            rows,
            [False, False, True, True, True, True],
        ),
        anchor="audit",
    )


def _shares_section(
    manifest: Any,
    rows: Sequence[dict[str, Any]],
    classes: ClassSet,
    source: collect.SourceData,
    options: ReportOptions,
    assets: _Assets,
) -> str:
    shares, notes = _share_series(manifest, rows, classes, source, options)
    # classes no source has a pixel of (e.g. Cityscapes classes a custom dataset never draws) only add noise
    shown = [c for c in range(classes.num_classes) if any(values[c] > 0 for _, values in shares)]
    absent = [classes.names[c] for c in range(classes.num_classes) if c not in shown]
    series = [plots.Series(name, [values[c] for c in shown]) for name, values in shares]
    names = [classes.names[c] for c in shown]
    chart = plots.grouped_bar_chart(
        names, series, title="Share of labelled pixels per class", swatches=[classes.colors[c] for c in shown]
    )
    table_rows = [[classes.names[c]] + [f"{100 * values[c]:.2f}" for _, values in shares] for c in shown]
    return html.section(
        "Class shares: auto labels vs human labels",
        html.paragraph(
            "Each class's share of the pixels that carry a label (ignore excluded). " + "; ".join(notes) + "."
        ),
        html.figure(assets.save(chart, "class_shares.png"), "per-class pixel share", width=chart.width),
        html.table(["class"] + [f"{s.name} %" for s in series], table_rows, [False] + [True] * len(series)),
        html.paragraph(f"No pixels anywhere: {', '.join(absent)}.", "muted") if absent else "",
        anchor="shares",
    )


def _coverage_section(
    out: Path,
    rows: Sequence[dict[str, Any]],
    meta: dict[str, Any],
    classes: ClassSet,
    options: ReportOptions,
    assets: _Assets,
    own_audit: collect.Audit | None,
) -> str:
    cov = collect.coverage_curve(out, rows, meta, classes, options.coverage_images)
    if cov is None:
        return html.section(
            "Coverage vs threshold",
            html.paragraph("No confidence store in this label set (generate ran without confidence), so no curve."),
            anchor="coverage",
        )
    curves = [plots.Series("pixels labelled %", [100 * v for v in cov.overall])]
    if own_audit is not None:
        accuracy = {round(p["threshold"], 6): p["accuracy"] for p in own_audit.sweep}
        curves.append(
            plots.Series(
                f"accuracy vs {own_audit.reference} % ({own_audit.name})",
                [_scaled(accuracy.get(round(t, 6))) for t in cov.thresholds],
            )
        )
    chart = plots.line_chart(
        cov.thresholds,
        curves,
        title="Coverage vs threshold",
        x_label="threshold on max softmax probability",
        y_label="%",
        marker_x=float(meta["threshold"]),
    )
    picks = [t for t in (cov.thresholds[0], 0.7, 0.9) if t in cov.thresholds]
    cols = [cov.thresholds.index(t) for t in picks]
    present = [c for c in range(classes.num_classes) if not np.isnan(cov.per_class[c]).all()]
    table_rows = [[classes.names[c]] + [f"{100 * cov.per_class[c, j]:.1f}" for j in cols] for c in present]
    return html.section(
        "Coverage vs threshold",
        html.paragraph(
            "Share of pixels that would keep a label if the teacher's max probability had to "
            f"exceed each threshold (dashed: this set's threshold {meta['threshold']:g}). From "
            f"the confidence store of {cov.images:,} images; exact at each ladder value, so "
            "`autolabel rethreshold` / `student.threshold` give exactly these labels."
        ),
        html.figure(assets.save(chart, "coverage.png"), "coverage vs threshold", width=chart.width),
        html.paragraph(
            "Per class: of the pixels labelled with the class at the set's threshold, the share "
            "kept at a higher threshold."
        ),
        html.table(["class"] + [f"kept at {t:g} %" for t in picks], table_rows, [False] + [True] * len(picks)),
        anchor="coverage",
    )


def _pct(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{100 * value:.1f}"


def _scaled(value: float | None) -> float | None:
    return None if value is None else 100 * value


# ---------------------------------------------------------------------------------------------------------
# picture sheets


@dataclass(frozen=True)
class _SheetContext:
    out: Path
    meta: dict[str, Any]
    classes: ClassSet
    source: collect.SourceData
    width: int
    assets: _Assets


def _sheet_intro(meta: dict[str, Any], classes: ClassSet, assets: _Assets) -> str:
    low, top = meta["ladder"][0], meta["ladder"][-1]
    conf = assets.save(plots.ramp_legend(260, f"<= {low:g}", f"> {top:g}"), "legend_confidence.png")
    weight = assets.save(plots.ramp_legend(260, "0: not used", "1: all from s"), "legend_weight.png")
    return (
        html.class_legend(classes.names, classes.colors)
        + html.figure(conf, "confidence colours", "confidence: max softmax probability, by ladder step")
        + html.figure(
            weight,
            "scale weight colours",
            "weight of scale s: the share of the fused prediction that comes from s (the attention maps "
            "multiplied out along the chain from the largest scale down), over the image in grey",
        )
    )


def _sheet(ctx: _SheetContext, rows: Sequence[dict[str, Any]], prefix: str) -> str:
    if not rows:
        return html.paragraph("No images left to show.")
    scales = [float(s) for s in ctx.meta["scales"]] if any(_has_attention(ctx, r) for r in rows) else []
    has_coarse = any(_coarse_path(ctx, r) is not None for r in rows)
    headers = ["image", "auto label", "confidence"] + [f"weight {s:g}x" for s in scales]
    headers += ["human coarse label"] if has_coarse else []
    body = []
    for i, row in enumerate(rows):
        cells = _row_cells(ctx, row, f"{prefix}_{i:03d}", scales, has_coarse)
        caption = f"{row['id']} · mean confidence {row['mean_confidence']:.3f}"
        body.append((caption, cells))
    return html.sheet(headers, body)


def _coarse_path(ctx: _SheetContext, row: dict[str, Any]) -> Path | None:
    sample = ctx.source.samples.get(row["id"])
    return sample.coarse if sample is not None else None


def _row_cells(
    ctx: _SheetContext, row: dict[str, Any], stem: str, scales: Sequence[float], has_coarse: bool
) -> list[tuple[str, str]]:
    size = (int(row["width"]), int(row["height"]))
    cells = [
        _image_tile(ctx, row, size, stem),
        _label_tile(ctx, row, size, stem),
        _confidence_tile(ctx, row, size, stem),
    ]
    weights = _scale_weights(ctx, row, size) if scales else {}
    base = _grey_base(ctx, row, size) if weights else None
    for s in scales:
        if s in weights and base is not None:
            tile = plots.overlay(plots.heatmap(np.rint(255 * weights[s]).astype(np.uint8)), base)
        else:
            tile = _placeholder(ctx, size, "no attention")
        cells.append((ctx.assets.save(tile, f"{stem}_weight_{s:g}x.png"), f"weight {s:g}x"))
    if has_coarse:
        cells.append(_coarse_tile(ctx, row, size, stem))
    return cells


def _has_attention(ctx: _SheetContext, row: dict[str, Any]) -> bool:
    return bool(collect.attention_maps(ctx.out, row["id"]))


def _scale_weights(ctx: _SheetContext, row: dict[str, Any], size: tuple[int, int]) -> dict[float, np.ndarray]:
    """Each scale's weight in the fused prediction (0..1) at tile size, from the dumped attention maps."""
    target = _tile_size(ctx, size)
    maps = {}
    for scale, path in collect.attention_maps(ctx.out, row["id"]).items():
        try:
            attn = Image.fromarray(read_label(path)).resize(target, Image.Resampling.BILINEAR)
        except AutolabelError:
            continue
        maps[scale] = np.asarray(attn, dtype=np.float32) / 255.0
    mscale = (ctx.meta.get("model") or {}).get("mscale")
    return collect.scale_weights(maps, [float(s) for s in ctx.meta["scales"]], mscale)


def _grey_base(ctx: _SheetContext, row: dict[str, Any], size: tuple[int, int]) -> Image.Image:
    try:
        image = Image.fromarray(read_image(row["image"]))
    except AutolabelError:
        return Image.new("RGB", _tile_size(ctx, size), (128, 128, 128))
    return _fit(ctx, image, size, nearest=False)


def _tile_size(ctx: _SheetContext, size: tuple[int, int]) -> tuple[int, int]:
    """Every tile of a row is shown ``ctx.width`` wide at the image's aspect, whatever its source's size."""
    return ctx.width, max(1, round(size[1] * ctx.width / size[0]))


def _fit(ctx: _SheetContext, image: Image.Image, size: tuple[int, int], nearest: bool) -> Image.Image:
    target = _tile_size(ctx, size)
    if image.size == target:
        return image
    return image.resize(target, Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR)


def _placeholder(ctx: _SheetContext, size: tuple[int, int], text: str) -> Image.Image:
    return plots.placeholder(*_tile_size(ctx, size), text)


def _image_tile(ctx: _SheetContext, row: dict[str, Any], size: tuple[int, int], stem: str) -> tuple[str, str]:
    try:
        tile = Image.fromarray(read_image(row["image"], exif_transpose=bool(row.get("exif_transposed"))))
    except AutolabelError:
        tile = _placeholder(ctx, size, "image not readable")
    return ctx.assets.save(_fit(ctx, tile, size, nearest=False), f"{stem}_image.png"), "image"


def _label_tile(ctx: _SheetContext, row: dict[str, Any], size: tuple[int, int], stem: str) -> tuple[str, str]:
    labels = collect.read_auto_label(ctx.out, row, ctx.meta, ctx.classes)
    tile = plots.colorize_labels(labels, ctx.classes.palette())
    return ctx.assets.save(_fit(ctx, tile, size, nearest=True), f"{stem}_label.png"), "auto label"


def _confidence_tile(ctx: _SheetContext, row: dict[str, Any], size: tuple[int, int], stem: str) -> tuple[str, str]:
    if confidence.has_codes(ctx.out, row["id"]):
        tile = plots.heatmap(confidence.load_confidence(ctx.out, row["id"]), levels=len(ctx.meta["ladder"]))
    else:
        tile = _placeholder(ctx, size, "no confidence store")
    return ctx.assets.save(_fit(ctx, tile, size, nearest=True), f"{stem}_confidence.png"), "confidence"


def _coarse_tile(ctx: _SheetContext, row: dict[str, Any], size: tuple[int, int], stem: str) -> tuple[str, str]:
    path = _coarse_path(ctx, row)
    try:
        labels = read_label(path, ctx.classes.label_to_train_lut()) if path is not None else None
    except AutolabelError:
        labels = None
    tile = (
        plots.colorize_labels(labels, ctx.classes.palette())
        if labels is not None
        else _placeholder(ctx, size, "no coarse label")
    )
    return ctx.assets.save(_fit(ctx, tile, size, nearest=True), f"{stem}_coarse.png"), "human coarse label"
