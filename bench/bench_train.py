"""Training throughput on CPU: loop steps/s for the tiny model, and the loader against the PNG-decode floor.

    python bench/bench_train.py [--size 1024x512] [--images 16] [--crop 256x128] [--steps 10] [--threads 1]

Prints JSON. The loader figure is a ratio measured in one run: samples/s of the training DataLoader
(decode + random scale + crop + flip + jitter, class-uniform crops, batching) over samples/s of merely
decoding the same image and label PNGs in the same process -- the floor any loader has to pay. A ratio of
1.0 means augmentation is free; the goal is >= 0.8.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from autolabel.classes import CITYSCAPES
from autolabel.config import load_config
from autolabel.data.datasets import discover_cityscapes
from autolabel.data.io import read_image, read_label
from autolabel.models import build_model
from autolabel.synth import make_synthetic_city
from autolabel.train.data import build_train_data, make_loader
from autolabel.train.loop import StepContext, build_optimizer, make_grad_scaler, train_step
from autolabel.train.losses import build_loss
from autolabel.train.sampling import PlanSampler


def size_arg(text: str) -> tuple[int, int]:
    width, height = (int(v) for v in text.lower().split("x"))
    return width, height


def decode_rate(samples, repeats: int) -> float:
    """Samples/s of reading image + label, nothing else."""
    lut = CITYSCAPES.label_to_train_lut()
    start = time.perf_counter()
    for _ in range(repeats):
        for s in samples:
            read_image(s.image)
            read_label(s.label, lut)
    return repeats * len(samples) / (time.perf_counter() - start)


def loader_rate(cfg, run_dir: Path, epochs: int) -> float:
    """Steady-state samples/s of the training DataLoader over ``epochs`` epochs (workers as configured); the
    clock starts at the first batch, so starting worker processes is not counted."""
    data = build_train_data(cfg, CITYSCAPES, run_dir, student=False)
    sampler = PlanSampler(data.planner)
    loader = make_loader(data, sampler, cfg.train, torch.device("cpu"))
    count, start = 0, None
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        for batch in loader:
            if start is None:
                start = time.perf_counter()
                continue
            count += batch["image"].shape[0]
    return count / (time.perf_counter() - start)


def step_rate(cfg, run_dir: Path, steps: int) -> float:
    """Training steps/s (forward, loss, backward, SGD) of the configured model on the CPU, data excluded."""
    data = build_train_data(cfg, CITYSCAPES, run_dir, student=False)
    sampler = PlanSampler(data.planner)
    batch = next(iter(make_loader(data, sampler, cfg.train, torch.device("cpu"))))
    torch.manual_seed(0)
    model = build_model(cfg.model).train()
    optimizer = build_optimizer(model, cfg.train)
    loss_fn = build_loss(cfg.loss, 19)
    ctx = StepContext(device=torch.device("cpu"), amp="off", mean=cfg.data.mean, std=cfg.data.std)
    scaler = make_grad_scaler(ctx.device, "off")
    train_step(model, batch, loss_fn, optimizer, scaler, ctx)  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        train_step(model, batch, loss_fn, optimizer, scaler, ctx)
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=size_arg, default=(1024, 512), help="synthetic image size WxH")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--crop", type=size_arg, default=(256, 128), help="training crop WxH")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=3, help="loader epochs to time")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers for the parallel figure")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repetitions; the best is kept")
    args = parser.parse_args()
    print(json.dumps(run_benchmark(args), indent=2))


def run_benchmark(args: argparse.Namespace) -> dict:
    """The figures for parsed arguments (see :func:`main`; ``bench/run.py`` passes its own); ``steps=0``
    skips the training-step rates."""
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        city = Path(tmp) / "city"
        make_synthetic_city(city, train=args.images, val=0, extra=0, size=args.size, seed=0, version=1)
        samples = discover_cityscapes(city, "train")
        crop_w, crop_h = args.crop

        def cfg(*extra):
            return load_config(
                None,
                [
                    f"data.root={json.dumps(str(city))}",
                    "model.width='tiny'",
                    f"train.crop_size=[{crop_h}, {crop_w}]",
                    f"train.batch_size={args.batch}",
                    "train.class_uniform_pct=0.5",
                    "train.class_uniform_tile=256",
                    "train.val_every=0",
                    *extra,
                ],
            )

        run_dir = Path(tmp) / "run"
        loader_rate(cfg("train.workers=0"), run_dir, 1)  # computes the centroid cache once, untimed
        # interleaved and best-of-N: other processes share these cores, so single timings wander
        decode, in_process = 0.0, 0.0
        for _ in range(args.repeats):
            decode = max(decode, decode_rate(samples, args.epochs))
            in_process = max(in_process, loader_rate(cfg("train.workers=0"), run_dir, args.epochs))
        parallel = loader_rate(cfg(f"train.workers={args.workers}"), run_dir, args.epochs)
        rmi = step_rate(cfg("loss.main='rmi'"), run_dir, args.steps) if args.steps else None
        ce = step_rate(cfg("loss.main='ce'"), run_dir, args.steps) if args.steps else None
    return {
        "image_size": f"{args.size[0]}x{args.size[1]}",
        "crop": f"{args.crop[0]}x{args.crop[1]}",
        "batch": args.batch,
        "threads": args.threads,
        "decode_floor_samples_per_s": round(decode, 2),
        "loader_samples_per_s_workers0": round(in_process, 2),
        "loader_vs_decode_floor": round(in_process / decode, 3),
        f"loader_samples_per_s_workers{args.workers}": round(parallel, 2),
        "train_steps_per_s_rmi": rmi and round(rmi, 3),
        "train_steps_per_s_ce": ce and round(ce, 3),
    }


if __name__ == "__main__":
    main()
