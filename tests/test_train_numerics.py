"""Training-step details that matter on GPUs, checked on the CPU: attention BN statistics, NaN steps under
loss scaling, RMI without host checks, loss parts left on the device, resuming with another AMP mode."""

from __future__ import annotations

import json

import pytest
import torch

from autolabel.config import LossConfig, ModelConfig, load_config
from autolabel.errors import ConfigError
from autolabel.models import build_model
from autolabel.train.distributed import DistInfo
from autolabel.train.loop import StepContext, build_optimizer, fit, train_step
from autolabel.train.losses import RMILoss, build_loss
from autolabel.train.state import iter_log, load_training_state

NUM_CLASSES = 5
CTX = StepContext(device=torch.device("cpu"), amp="off", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


def tiny(train_scales=(0.5, 1.0), mscale="hierarchical") -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = ModelConfig(width="tiny", num_classes=NUM_CLASSES, mscale=mscale, train_scales=train_scales)
    return build_model(cfg)


def batch(seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        "image": torch.randint(0, 256, (2, 32, 48, 3), dtype=torch.uint8, generator=gen),
        "label": torch.randint(0, NUM_CLASSES, (2, 32, 48), dtype=torch.uint8, generator=gen),
        "weight": torch.ones(2),
    }


def attention_bn_counts(model: torch.nn.Module) -> dict[str, int]:
    return {
        name: int(module.num_batches_tracked)
        for name, module in model.scale_attn.named_modules()
        if isinstance(module, torch.nn.BatchNorm2d)
    }


@pytest.mark.parametrize("train_scales", [(0.5, 1.0), (0.5, 1.0, 1.5)])
def test_the_attention_head_normalises_over_every_training_scale(train_scales):
    model = tiny(train_scales).train()
    loss_fn = build_loss(LossConfig(main="ce"), NUM_CLASSES)
    optimizer = build_optimizer(model, load_config(None).train)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    train_step(model, batch(), loss_fn, optimizer, scaler, CTX)
    # the published training applies the head at every scale, the largest too (its output unused)
    assert attention_bn_counts(model) == {"bn0": len(train_scales), "bn1": len(train_scales)}
    trunk_bn = model.ocr.conv3x3_ocr[1][0]
    assert int(trunk_bn.num_batches_tracked) == len(train_scales)  # the same count as the rest of the net


def test_inference_still_skips_the_largest_scales_attention():
    model = tiny().eval()
    calls = []
    model.scale_attn.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[-1]))
    with torch.inference_mode():
        out = model(torch.randn(1, 3, 32, 64), scales=[0.5, 1.0, 2.0])
    assert len(calls) == 2 and "attn_2.0x" not in out  # 0.5x and 1.0x only


def test_hierarchical_attention_with_a_single_training_scale_is_refused():
    with pytest.raises(ConfigError, match=r"model.train_scales: \[1.0\]; mscale = 'hierarchical'"):
        ModelConfig(mscale="hierarchical", train_scales=(1.0,))
    with pytest.raises(ConfigError, match="model.train_scales"):
        load_config(None, ["model.train_scales=[1.0]"])
    ModelConfig(mscale="explicit", train_scales=(1.0,))  # explicit uses its head at one scale too
    ModelConfig(mscale="single", train_scales=(1.0,))


def test_rmi_of_nan_logits_is_not_finite_and_raises_nothing():
    logits = torch.randn(2, NUM_CLASSES, 32, 32, generator=torch.Generator().manual_seed(1))
    logits[0, 0, 3, 3] = float("nan")  # what one fp16 overflow upstream leaves
    target = torch.randint(0, NUM_CLASSES, (2, 32, 32), generator=torch.Generator().manual_seed(2))
    loss = RMILoss(num_classes=NUM_CLASSES)(logits, target)
    assert not torch.isfinite(loss)
    finite = RMILoss(num_classes=NUM_CLASSES)(logits.nan_to_num(0.0), target)
    assert torch.isfinite(finite)


def test_a_step_with_a_nan_loss_is_skipped_by_the_grad_scaler():
    model = tiny().train()
    rmi = build_loss(LossConfig(main="rmi"), NUM_CLASSES)

    def overflowing(outputs, target, pixel_weight=None):  # as if the fp16 forward had overflowed
        return rmi({**outputs, "pred": outputs["pred"] * float("nan")}, target, pixel_weight)

    optimizer = build_optimizer(model, load_config(None).train)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)  # enabled: what fp16 training uses
    before = {k: v.clone() for k, v in model.state_dict().items() if v.is_floating_point()}
    parts = train_step(model, batch(), overflowing, optimizer, scaler, CTX)
    assert not torch.isfinite(parts["total"])
    after = model.state_dict()
    weights = [k for k in before if "running" not in k]
    assert all(torch.equal(before[k], after[k]) for k in weights)  # the optimizer step was skipped
    assert scaler.get_scale() == 512.0  # and the scale backed off, as after any overflow
    parts = train_step(model, batch(1), rmi, optimizer, scaler, CTX)  # the next step trains normally
    assert torch.isfinite(parts["total"]) and not torch.equal(before[weights[0]], model.state_dict()[weights[0]])


# ---------------------------------------------------------------------------------------------------------
# the loop


@pytest.fixture(scope="module")
def city(synthetic_city):
    return synthetic_city(train=4, val=1, extra=0, size=(96, 48), seed=0)


def tiny_run(city, out, *extra):
    return load_config(
        None,
        [
            f"data.root={json.dumps(str(city))}",
            f"train.out_dir={json.dumps(str(out))}",
            "model.width='tiny'",
            "train.crop_size=[48, 48]",
            "train.batch_size=2",
            "train.workers=0",
            "train.epochs=2",
            "train.val_every=0",
            "train.class_uniform_tile=32",
            "train.device='cpu'",
            *extra,
        ],
    )


def test_loss_parts_stay_on_the_device_until_a_line_is_logged(city, tmp_path):
    seen = []
    fit(tiny_run(city, tmp_path / "run", "train.log_every=3"), on_step=lambda pos, parts: seen.append(parts))
    assert len(seen) == 4
    assert all(isinstance(p["total"], torch.Tensor) and p["total"].ndim == 0 for p in seen)
    assert all(not p["total"].requires_grad and isinstance(p["lr"], float) for p in seen)
    logged = [r for r in iter_log(tmp_path / "run") if r["event"] == "train"]
    assert [r["step"] for r in logged] == [2, 3, 4]  # every 3rd step and each epoch's last
    assert [r["total"] for r in logged] == [round(float(seen[s - 1]["total"]), 6) for s in (2, 3, 4)]


def test_resume_with_fp16_loss_scaling_from_a_run_saved_without_it(city, tmp_path):
    out = tmp_path / "run"
    fit(tiny_run(city, out, "train.max_iters=1"))  # on the CPU: no loss scaling, an empty scaler state
    model = build_model(tiny_run(city, out).model)
    optimizer = build_optimizer(model, tiny_run(city, out).train)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)  # as a CUDA fp16 resume would build it
    pos = load_training_state(out, model, tiny_run(city, out).model, optimizer, scaler, DistInfo(), 19)
    assert pos.global_step == 1 and scaler.get_scale() == 2.0**16
