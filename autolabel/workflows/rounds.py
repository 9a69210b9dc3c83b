"""``autolabel rounds``: self-training rounds, the student of one round labelling the pool for the next.

Round 1 is the usual pipeline: a teacher trained on fine labels (``train.epochs``) labels the config's
``generate.split``, and a student trains on fine + those labels (``student.epochs``). Round k+1 labels the
same pool again with round k's student as the teacher and trains a new student on fine + the new labels
(Naive-Student, Chen et al. 2020; CBST/CRST iterate the same way). The threshold is the config's global
``generate.threshold`` in every round (class-wise schedules need calibrated per-class thresholds, which the
label sets do not carry yet).

Layout of one chain under ``out`` (with ``seeds``, one chain per seed under ``out/seed-S/``)::

    round-1/teacher/                 the fine-only teacher (run folder: last.pt, log.jsonl, ...)
    round-k/labels/                  the label set; labelset.json names its teacher and parent label set
    round-k/student/                 the student trained on fine + round-k/labels
    round-k/eval/{teacher,student}.json   val mIoU (round k's teacher = round k-1's student)
    round-k/audit.json               the labels against true labels (gtFine of the pool), when they exist
    round-k/diff.json                round-k/labels against round-(k-1)/labels (``autolabel diff``)
    round-k/report/index.html        the label set's report, with the diff section
    round-k/round.json               the round's numbers; written last: a round with it is finished
    rounds.json  rounds.md           every round's numbers (and the stopping signals)

Resumable: a round with a ``round.json`` for the current teacher is skipped; an unfinished one resumes
through the steps' own resume (training from ``last.pt``, ``generate`` from its manifest, evaluations keyed
by checkpoint hash).

Stopping: after each round the two signals are reported: the share of label pixels that changed from the
previous round, and the gain in the student's val mIoU over the previous round's student. With a
:class:`StopRule` the chain stops after the first round whose signal fires.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import platform
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from autolabel import labelset
from autolabel.classes import ClassSet, class_set_from_config
from autolabel.config import PipelineConfig, load_config, replace
from autolabel.data.datasets import Sample
from autolabel.data.sources import discover_split
from autolabel.errors import ConfigError, LabelSetError
from autolabel.evaluate.audit import audit_labelset, reference_path
from autolabel.fs import atomic_write_bytes, write_json
from autolabel.labelset.diff import diff_labelsets
from autolabel.labelset.lineage import record_round
from autolabel.models.checkpoint import checkpoint_sha256
from autolabel.report import build_report
from autolabel.synth import v2
from autolabel.train.state import LAST
from autolabel.workflows.steps import (
    DemoSettings,
    evaluate_checkpoint,
    label_pool,
    make_city,
    run_side_by_side,
    train_model,
)

log = logging.getLogger(__name__)

StageFn = Callable[[str], None]
ROUND_FILE = "round.json"
RESULTS_JSON, RESULTS_MD = "rounds.json", "rounds.md"
TRUE_LABELS = "gtFine"  # the pool's true labels, where the dataset has them (the synthetic city does)


# ---------------------------------------------------------------------------------------------------------
# the stopping rule


@dataclass(frozen=True)
class StopRule:
    """``changed<X``: stop once fewer than a share X of the label pixels changed from the previous round;
    ``miou-plateau[<D]``: stop once the student's val mIoU gained less than D over the previous round's
    student (bare ``miou-plateau``: it did not improve at all)."""

    kind: Literal["changed", "miou-plateau"]
    below: float

    def __str__(self) -> str:
        if self.kind == "changed":
            return f"changed<{self.below:g}"
        return "miou-plateau" if self.below == 0 else f"miou-plateau<{self.below:g}"

    def fires(self, signals: dict[str, float | None]) -> bool:
        """Whether the rule says stop, given a round's ``changed_share`` and ``miou_gain`` (None: not known)."""
        if self.kind == "changed":
            value = signals.get("changed_share")
            return value is not None and value < self.below
        gain = signals.get("miou_gain")
        return gain is not None and (gain < self.below if self.below > 0 else gain <= 0)


_RULE = re.compile(r"^\s*(changed|miou-plateau)\s*(?:<\s*([0-9.]+)\s*(%?))?\s*$")


def parse_stop_rule(text: str, flag: str = "--stop-when") -> StopRule:
    """``changed<0.02`` (or ``changed<2%``), ``miou-plateau``, ``miou-plateau<0.005`` -> a :class:`StopRule`."""
    match = _RULE.match(text)
    if match is None or (match.group(1) == "changed" and match.group(2) is None):
        raise ConfigError(
            f"{flag} {text!r}: expected changed<X (a share, e.g. changed<0.02 or changed<2%), "
            "miou-plateau, or miou-plateau<D (a mIoU gain, e.g. 0.005)"
        )
    kind, number, percent = match.groups()
    try:
        value = float(number) if number is not None else 0.0
    except ValueError:
        raise ConfigError(f"{flag} {text!r}: {number!r} is not a number") from None
    value = value / 100 if percent else value
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{flag} {text!r}: the bound must be a share between 0 and 1 (or 0-100%)")
    return StopRule(kind="changed" if kind == "changed" else "miou-plateau", below=value)


def stop_signals(records: Sequence[dict[str, Any]], rule: StopRule | None) -> dict[str, Any]:
    """The stopping signals of the last round of ``records`` and whether ``rule`` (if any) fires."""
    last = records[-1]
    previous = records[-2] if len(records) > 1 else None
    gain = None
    if previous is not None and last["student_miou"] is not None and previous["student_miou"] is not None:
        gain = round(last["student_miou"] - previous["student_miou"], 6)
    signals: dict[str, Any] = {"changed_share": last["changed_share"], "miou_gain": gain}
    signals["rule"] = str(rule) if rule is not None else None
    signals["stop"] = rule.fires(signals) if rule is not None else False
    return signals


# ---------------------------------------------------------------------------------------------------------
# settings


@dataclass(frozen=True)
class City:
    """The synthetic city to make under ``out/city`` (and point ``data.root`` at)."""

    train: int = 200
    val: int = 50
    extra: int = 400
    size: tuple[int, int] = v2.DESIGN_SIZE  # (width, height): what synthetic city version 2 is laid out for
    seed: int = 0
    workers: int = 2


@dataclass(frozen=True)
class RoundsSettings:
    """One ``autolabel rounds`` run."""

    out: Path
    config: Path
    rounds: int = 2
    overrides: tuple[str, ...] = ()
    city: City | None = None  # None: the config's own data
    seeds: tuple[int, ...] | None = None  # None: one chain in ``out`` with the config's train.seed
    jobs: int = 2  # chains side by side (one torch thread each) when there are several seeds
    stop_when: StopRule | None = None
    report: bool = True
    command: str = "autolabel rounds"

    def __post_init__(self) -> None:
        if self.rounds < 1:
            raise ConfigError(f"--rounds {self.rounds}: expected at least 1")
        if self.seeds is not None and len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"--seeds {list(self.seeds)}: seeds must differ")


def rounds_config(settings: RoundsSettings, out: Path) -> PipelineConfig:
    """The pipeline config, its data root pointed at the synthetic city when there is one."""
    if settings.city is None:
        return load_config(settings.config, settings.overrides)
    return load_config(settings.config, (*settings.overrides, f"data.root={out / 'city'}"))


def _seeded(cfg: PipelineConfig, seed: int) -> PipelineConfig:
    return replace(cfg, train=replace(cfg.train, seed=seed))


def round_dir(chain: Path, k: int) -> Path:
    return Path(chain) / f"round-{k}"


def teacher_of(chain: Path, k: int) -> Path:
    """Round k's teacher: the fine-only teacher in round 1, else round k-1's student."""
    return round_dir(chain, 1) / "teacher" / LAST if k == 1 else round_dir(chain, k - 1) / "student" / LAST


# ---------------------------------------------------------------------------------------------------------
# the run


def run_rounds(settings: RoundsSettings, on_stage: StageFn | None = None) -> dict[str, Any]:
    """Run (or finish) the rounds under ``settings.out``; writes and returns ``rounds.json``'s content."""
    started = time.perf_counter()
    out = Path(settings.out).resolve()
    cfg = rounds_config(settings, out)
    say = on_stage or (lambda text: None)
    if settings.city is not None:
        say("synthetic city")
        c = settings.city
        demo = DemoSettings(
            out=out, config=settings.config, train=c.train, val=c.val, extra=c.extra, size=c.size, seed=c.seed
        )
        make_city(replace(demo, synth_workers=c.workers))
    if settings.seeds is None:
        return run_chain(
            cfg, out, settings.rounds, settings.stop_when, settings.report, _about(settings, cfg), on_stage
        )
    about = _about(settings, cfg)
    side_by_side = min(settings.jobs, len(settings.seeds))
    say(f"{len(settings.seeds)} chains of {settings.rounds} rounds, {side_by_side} side by side")
    tasks = [
        (
            run_chain,
            (_seeded(cfg, s), out / f"seed-{s}", settings.rounds, settings.stop_when, settings.report, about),
        )
        for s in settings.seeds
    ]
    chains = run_side_by_side(tasks, settings.jobs)
    results = {
        **about,
        "seeds": list(settings.seeds),
        "wall_minutes": round((time.perf_counter() - started) / 60, 1),  # of this invocation
        "summary": summarise_seeds(chains),
        "per_seed": {str(s): chain for s, chain in zip(settings.seeds, chains, strict=True)},
    }
    write_results(out, results)
    return results


def run_chain(
    cfg: PipelineConfig,
    chain: Path,
    rounds: int,
    stop_when: StopRule | None = None,
    report: bool = True,
    about: dict[str, Any] | None = None,
    on_stage: StageFn | None = None,
) -> dict[str, Any]:
    """The rounds of one training seed under ``chain``; writes ``chain/rounds.{json,md}``, returns the numbers.

    ``about`` (what produced the run: command, config, machine) heads the results.
    """
    started = time.perf_counter()
    chain = Path(chain).resolve()
    say = on_stage or (lambda text: None)
    classes = class_set_from_config(cfg.classes)
    val = [s for s in discover_split(cfg.data, cfg.data.val_split) if s.label is not None]
    records: list[dict[str, Any]] = []
    stopped_after = None
    for k in range(1, rounds + 1):
        record = _finished_round(chain, k)
        if record is None:
            record = run_round(cfg, chain, k, classes, val, report=report, on_stage=say)
        else:
            say(f"round {k}: finished earlier, skipped")
        records.append(record)
        record["stop"] = stop_signals(records, stop_when)
        if record["stop"]["stop"]:
            stopped_after = k
            say(f"round {k}: {stop_when} says stop")
            break
    results = {
        **(about or {}),
        "chain": str(chain),
        "seed": cfg.train.seed,
        "rounds_asked": rounds,
        "stopped_after": stopped_after,
        "stop_when": str(stop_when) if stop_when is not None else None,
        "rounds": records,
        # the rounds' own stage times: what the chain cost, however often it was resumed
        "minutes": round(sum(sum(r["seconds"].values()) for r in records) / 60, 1),
        "wall_minutes": round((time.perf_counter() - started) / 60, 1),  # of this invocation
    }
    write_results(chain, results)
    return results


def _finished_round(chain: Path, k: int) -> dict[str, Any] | None:
    """Round k's record when it finished (None: never run or unfinished); an error when it was made with
    another teacher than round k's teacher now is (an earlier round was redone)."""
    path = round_dir(chain, k) / ROUND_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except ValueError as exc:
        raise LabelSetError(f"{path}: unreadable ({exc}); remove it to redo round {k}") from None
    teacher = teacher_of(chain, k)
    sha = checkpoint_sha256(teacher)
    if record.get("teacher_sha256") != sha:
        raise LabelSetError(
            f"{path}: round {k} was made with teacher {str(record.get('teacher_sha256'))[:12]}, but {teacher} "
            f"is now {sha[:12]}; remove {round_dir(chain, k)} and the rounds after it to redo them"
        )
    return record


def run_round(
    cfg: PipelineConfig,
    chain: Path,
    k: int,
    classes: ClassSet,
    val: Sequence[Sample],
    *,
    report: bool = True,
    on_stage: StageFn | None = None,
) -> dict[str, Any]:
    """Label the pool with round k's teacher, train its student, measure both; writes ``round.json``."""
    say = on_stage or (lambda text: None)
    folder = round_dir(chain, k)
    teacher = teacher_of(chain, k)
    parent = round_dir(chain, k - 1) / "labels" if k > 1 else None
    labels = folder / "labels"
    seconds: dict[str, float] = {}

    def stage(name: str) -> _Timer:
        say(f"round {k}: {name}")
        return _Timer(seconds, name)

    if k == 1:
        with stage("teacher"):
            train_model(cfg, teacher.parent)
    sha = checkpoint_sha256(teacher)
    with stage("generate"):
        label_pool(cfg, teacher, labels, classes)
        record_round(labels, index=k, teacher=teacher, teacher_sha256=sha, parent=parent)
    diff = None
    if parent is not None:
        with stage("diff"):
            diff = diff_labelsets(parent, labels, max_pixels=cfg.data.max_image_pixels)
            write_json(folder / "diff.json", diff)
    with stage("student"):
        student = train_model(cfg, folder / "student", [labels])
    with stage("evaluate"):
        # round k's teacher is round k-1's student: its evaluation is already on disk (keyed by its hash)
        teacher_json = folder / "eval" / "teacher.json" if k == 1 else round_dir(chain, k - 1) / "eval" / "student.json"
        teacher_eval = _evaluate(cfg, teacher, val, classes, teacher_json)
        student_eval = _evaluate(cfg, student, val, classes, folder / "eval" / "student.json")
    with stage("audit"):
        audit = _audit(labels, classes, folder / "audit.json", cfg.data.max_image_pixels)
    if report:
        with stage("report"):
            evaluations = {"teacher": teacher_json, "student": folder / "eval" / "student.json"}
            _round_report(folder, labels, classes, evaluations, audit is not None, diff is not None, k)
    record = _round_record(chain, k, labels, classes, teacher, student, teacher_eval, student_eval, audit, diff)
    record["seconds"] = {name: round(v, 1) for name, v in seconds.items()}
    write_json(folder / ROUND_FILE, record)
    return record


def _round_report(
    folder: Path,
    labels: Path,
    classes: ClassSet,
    evaluations: dict[str, Path],
    audited: bool,
    diffed: bool,
    k: int,
) -> None:
    """Round k's label-set report: both models' evaluations, the audit, the diff from round k-1."""
    build_report(
        labels,
        folder / "report",
        classes=classes,
        evaluations={name: path for name, path in evaluations.items() if path.is_file()},
        audits={f"round {k} labels": folder / "audit.json"} if audited else None,
        diff=folder / "diff.json" if diffed else None,
    )


def _round_record(
    chain: Path,
    k: int,
    labels: Path,
    classes: ClassSet,
    teacher: Path,
    student: Path,
    teacher_eval: dict[str, Any] | None,
    student_eval: dict[str, Any] | None,
    audit: dict[str, Any] | None,
    diff: dict[str, Any] | None,
) -> dict[str, Any]:
    """The numbers ``round.json`` keeps: who labelled, who learnt, how good both are, what changed."""
    meta = labelset.read_labelset(labels)
    summary = labelset.summarise(labelset.read_manifest(labels), classes.names)
    return {
        "round": k,
        "teacher": teacher.relative_to(chain).as_posix(),
        "teacher_sha256": meta["teacher_sha256"],
        "student": student.relative_to(chain).as_posix(),
        "student_sha256": checkpoint_sha256(student),
        "labelset_id": meta["labelset_id"],
        "parent_labelset_id": meta["parent_labelset_id"],
        "threshold": meta["threshold"],
        "images": summary["ok"],
        "teacher_miou": teacher_eval["miou"] if teacher_eval else None,
        "student_miou": student_eval["miou"] if student_eval else None,
        "coverage": round(1.0 - summary["ignored_fraction"], 6),
        "precision": audit["accuracy"] if audit else None,  # of the labelled pixels, the share labelled right
        "true_coverage": audit["coverage"] if audit else None,
        "labels_miou": audit["miou"] if audit else None,
        "changed_share": diff["changed_share"] if diff else None,
        "diff": {key: diff[key] for key in ("gained_share", "lost_share", "flipped_share", "agreement")}
        if diff
        else None,
    }


class _Timer:
    """``with _Timer(seconds, name):`` adds the block's wall time to ``seconds[name]``."""

    def __init__(self, seconds: dict[str, float], name: str) -> None:
        self.seconds, self.name, self.start = seconds, name, 0.0

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.seconds[self.name] = self.seconds.get(self.name, 0.0) + time.perf_counter() - self.start


def _evaluate(
    cfg: PipelineConfig, checkpoint: Path, val: Sequence[Sample], classes: ClassSet, out_json: Path
) -> dict[str, Any] | None:
    """Val mIoU of a checkpoint (None when the val split has no labels)."""
    if not val:
        return None
    return evaluate_checkpoint(cfg, checkpoint, val, classes, out_json)


def _audit(labels: Path, classes: ClassSet, out_json: Path, max_pixels: int | None) -> dict[str, Any] | None:
    """The label set against the pool's true labels, when any image has them; else None."""
    rows = labelset.read_manifest(labels).to_pylist()
    if not any(reference_path(row, TRUE_LABELS) is not None for row in rows):
        return None
    report = audit_labelset(labels, TRUE_LABELS, classes, max_pixels=max_pixels)
    write_json(out_json, report)
    return report


def _about(settings: RoundsSettings, cfg: PipelineConfig) -> dict[str, Any]:
    """What produced the results: the command, the config, the machine, the city."""
    return {
        "command": settings.command,
        "config": str(settings.config),
        "overrides": list(settings.overrides),
        "rounds_asked": settings.rounds,
        "stop_when": str(settings.stop_when) if settings.stop_when is not None else None,
        "epochs": {"teacher": cfg.epochs(student=False), "student": cfg.epochs(student=True)},
        "threshold": cfg.generate.threshold,
        "city": None
        if settings.city is None
        else {
            "train": settings.city.train,
            "val": settings.city.val,
            "extra": settings.city.extra,
            "size": list(settings.city.size),
            "seed": settings.city.seed,
        },
        "machine": {
            "cpus": multiprocessing.cpu_count(),
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
    }


# ---------------------------------------------------------------------------------------------------------
# several seeds, tables, files

COLUMNS = (  # record key -> column header of the tables (shares shown in %)
    ("teacher_miou", "teacher mIoU"),
    ("student_miou", "student mIoU"),
    ("coverage", "label coverage"),
    ("precision", "label precision"),
    ("labels_miou", "label mIoU"),
    ("changed_share", "changed vs previous"),
)


def mean_std(values: Sequence[float | None]) -> dict[str, float | int | None]:
    """Mean and sample standard deviation of the values that are there (std None for fewer than two)."""
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(np.mean(vals)), "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else None, "n": len(vals)}


def summarise_seeds(chains: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per round, mean ± std over the chains that ran it of every table column."""
    most = max((len(c["rounds"]) for c in chains), default=0)
    summary = []
    for k in range(1, most + 1):
        records = [c["rounds"][k - 1] for c in chains if len(c["rounds"]) >= k]
        row: dict[str, Any] = {"round": k, "chains": len(records)}
        row |= {key: mean_std([r.get(key) for r in records]) for key, _ in COLUMNS}
        row["miou_gain"] = mean_std([r["stop"]["miou_gain"] for r in records])
        row["minutes"] = mean_std([sum(r["seconds"].values()) / 60 for r in records])
        summary.append(row)
    return summary


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _pct_stat(stat: dict[str, Any]) -> str:
    if stat["mean"] is None:
        return "–"
    spread = f" ± {100 * stat['std']:.1f}" if stat["std"] is not None else ""
    return f"{100 * stat['mean']:.1f}{spread}"


def markdown(results: dict[str, Any]) -> str:
    """The results as a markdown table (per round; mean ± sample std over seeds when there are several)."""
    head = ["round", *(name for _, name in COLUMNS)]
    lines = [f"Produced by `{results.get('command', 'autolabel rounds')}`; numbers in %.", ""]
    epochs = results.get("epochs")
    if epochs:
        lines[0] += (
            f" Teacher {epochs['teacher']} epochs on fine labels, every student {epochs['student']} epochs on "
            f"fine + that round's labels (threshold {results.get('threshold', '?')})."
        )
    if "summary" in results:
        chains = [c["minutes"] for c in results["per_seed"].values()]
        lines[0] += (
            f" {len(results['seeds'])} seeds: mean ± sample std. {results['wall_minutes']} min wall-clock "
            f"(chains {min(chains)}-{max(chains)} min each)."
        )
        lines += ["| " + " | ".join([*head, "mIoU gain"]) + " |", "|" + " ---: |" * (len(head) + 1)]
        for row in results["summary"]:
            cells = [_pct_stat(row[key]) for key, _ in COLUMNS] + [_pct_stat(row["miou_gain"])]
            lines.append(f"| {row['round']} | " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"
    lines[0] += f" {results['minutes']} min (the rounds' stage times)."
    lines += ["| " + " | ".join([*head, "mIoU gain", "stop"]) + " |", "|" + " ---: |" * (len(head) + 2)]
    for r in results["rounds"]:
        stop = r["stop"]
        cells = [_pct(r.get(key)) for key, _ in COLUMNS] + [_pct(stop["miou_gain"]), "yes" if stop["stop"] else "–"]
        lines.append(f"| {r['round']} | " + " | ".join(cells) + " |")
    if results.get("stopped_after"):
        lines += ["", f"Stopped after round {results['stopped_after']}: {results['stop_when']}."]
    return "\n".join(lines) + "\n"


def write_results(folder: Path, results: dict[str, Any]) -> None:
    write_json(Path(folder) / RESULTS_JSON, results)
    atomic_write_bytes(Path(folder) / RESULTS_MD, markdown(results).encode())
