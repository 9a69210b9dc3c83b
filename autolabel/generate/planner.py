"""``generate --dry-run``: what a run would do and how long it would take, without writing anything."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from autolabel.classes import ClassSet
from autolabel.data.datasets import Sample
from autolabel.data.sources import exclude_output
from autolabel.generate.runner import GenerateJob, estimate_seconds_per_image, prepare
from autolabel.generate.sharding import shard_counts


@dataclass(frozen=True)
class LabelPlan:
    """The plan of one ``generate`` job (its shard) and a time estimate from a few timed images."""

    labelset_id: str
    inputs: int  # images given (after excluding OUT)
    shard: str  # "I/N"
    per_shard: tuple[int, ...]  # images in each shard (all shards, for sizing an array job)
    shard_size: int
    done: int
    todo: int
    chunks: int
    seconds_per_image: float | None  # None when no image could be read
    timed_images: int
    with_fine: int = 0  # inputs with a fine (human) label next to them
    with_coarse: int = 0  # inputs with a coarse (human) label next to them


def plan_labels(job: GenerateJob, samples: Sequence[Sample], classes: ClassSet | None = None) -> LabelPlan:
    """Load the teacher, plan the run and time the teacher on up to two images that are still to do."""
    teacher, plan = prepare(job, samples, classes)
    todo = [s for c in plan.chunks if not c.complete for s in c.todo]
    inputs = exclude_output(samples, job.out)
    ids = [s.id for s in inputs]
    per_image = estimate_seconds_per_image(teacher, todo, job.data.max_image_pixels)
    return LabelPlan(
        labelset_id=plan.meta["labelset_id"],
        inputs=plan.inputs,
        shard=str(job.shard),
        per_shard=tuple(shard_counts(ids, job.shard.count)),
        shard_size=plan.shard_size,
        done=plan.done,
        todo=plan.todo,
        chunks=len(plan.chunks),
        seconds_per_image=per_image,
        timed_images=min(2, len(todo)) if per_image is not None else 0,
        with_fine=sum(s.label is not None for s in inputs),
        with_coarse=sum(s.coarse is not None for s in inputs),
    )
