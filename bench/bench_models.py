"""Cost of multi-scale attention, as ratios measured in one run (absolute times depend on the machine).

Times are process CPU seconds (see :func:`interleaved_seconds`).

1. Inference: hierarchical 3-scale (0.5, 1.0, 2.0) time / sum of the three single-scale forwards of the same
   network (goal <= 1.05: the attention and the fusion should be nearly free).
2. Training step (forward + composite loss + backward + SGD step): the hierarchical pair (0.5, 1.0) and
   explicit attention on (0.5, 1.0, 2.0), each relative to single-scale 1.0 training (the paper: pair
   training costs about a quarter of explicit 3-scale training).

Usage: python bench/bench_models.py [--width tiny] [--size 256x512] [--threads 1] [--repeats 7] [--no-train]
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import torch

from autolabel.config import LossConfig, ModelConfig
from autolabel.models import build_model
from autolabel.train.losses import build_loss

NUM_CLASSES = 19


def interleaved_seconds(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Least CPU time of each function over ``repeats`` rounds, the functions interleaved within each round.

    CPU time of the process (not wall time), interleaving and the minimum keep the ratios honest on a machine
    shared with other jobs: waiting for a core is not counted, and a burst of cache contention hits all
    candidates of a round alike.
    """
    for fn in fns.values():  # warm-up (allocator, lazy init)
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.process_time()
            fn()
            times[name].append(time.process_time() - start)
    return {name: min(values) for name, values in times.items()}


def bench_inference(width: str, images: torch.Tensor, repeats: int) -> dict[str, float]:
    scales = (0.5, 1.0, 2.0)
    model = build_model(ModelConfig(width=width, num_classes=NUM_CLASSES, infer_scales=scales)).eval()
    # one scale alone runs no attention head and no fusion: the plain network at that scale
    fns: dict[str, Callable[[], object]] = {f"single_{s}x": lambda s=s: model(images, scales=(s,)) for s in scales}
    fns["hierarchical_3scale"] = lambda: model(images, scales=scales)
    with torch.inference_mode():
        seconds = interleaved_seconds(fns, repeats)
    total = sum(seconds[f"single_{s}x"] for s in scales)
    return {
        **{f"{name}_s": t for name, t in seconds.items()},
        "sum_single_scale_s": total,
        "ratio_hierarchical_to_sum_single": seconds["hierarchical_3scale"] / total,
    }


def train_step(cfg: ModelConfig, images: torch.Tensor, target: torch.Tensor) -> Callable[[], None]:
    """One SGD step of a fresh model (forward, composite loss, backward, update) as a closure."""
    torch.manual_seed(0)
    model = build_model(cfg).train()
    loss_fn = build_loss(LossConfig(), cfg.num_classes)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss, _ = loss_fn(model(images), target)
        loss.backward()
        optimizer.step()

    return step


def bench_training(width: str, images: torch.Tensor, repeats: int) -> dict[str, float]:
    target = torch.randint(
        0, NUM_CLASSES, (images.shape[0], *images.shape[-2:]), generator=torch.Generator().manual_seed(0)
    )
    setups = {
        "single_1.0": ModelConfig(width=width, num_classes=NUM_CLASSES, mscale="single", train_scales=(1.0,)),
        "pair_0.5_1.0": ModelConfig(
            width=width, num_classes=NUM_CLASSES, mscale="hierarchical", train_scales=(0.5, 1.0)
        ),
        "explicit_0.5_1.0_2.0": ModelConfig(
            width=width, num_classes=NUM_CLASSES, mscale="explicit", train_scales=(0.5, 1.0, 2.0)
        ),
    }
    steps = {name: train_step(cfg, images, target) for name, cfg in setups.items()}
    seconds = interleaved_seconds(steps, repeats)
    return {
        **{f"train_step_{name}_s": t for name, t in seconds.items()},
        "ratio_pair_to_single": seconds["pair_0.5_1.0"] / seconds["single_1.0"],
        "ratio_explicit_to_single": seconds["explicit_0.5_1.0_2.0"] / seconds["single_1.0"],
        "ratio_pair_to_explicit": seconds["pair_0.5_1.0"] / seconds["explicit_0.5_1.0_2.0"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", default="tiny", choices=["tiny", "w18_small", "w18", "w48"])
    parser.add_argument("--size", default="256x512", help="input HxW")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-train", action="store_true", help="measure inference only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    height, width = (int(v) for v in args.size.lower().split("x"))
    images = torch.randn(args.batch, 3, height, width, generator=torch.Generator().manual_seed(0))
    result = {
        "width": args.width,
        "size": [height, width],
        "batch": args.batch,
        "threads": args.threads,
        "repeats": args.repeats,
        "torch": torch.__version__,
    }
    result.update(bench_inference(args.width, images, args.repeats))
    if not args.no_train:
        result.update(bench_training(args.width, images, args.repeats))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
