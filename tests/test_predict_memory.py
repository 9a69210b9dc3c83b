"""What prediction holds in memory: unused outputs are dropped before flip averaging and tiling.

Peak memory is measured with the profiler's allocation records (CPU tensors only), which count every byte
the tensors of an operation allocate and free, in order; the peak is that running sum's maximum.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from autolabel.config import ModelConfig
from autolabel.models import build_model
from autolabel.models import evaluation as evaluation_module
from autolabel.models.evaluation import EvalSettings, evaluate_model
from autolabel.models.predict import predict_logits

NUM_CLASSES = 19
SCALES = (0.5, 1.0, 2.0)


def peak_bytes(fn) -> int:
    """The most bytes of CPU tensors alive at once while ``fn()`` runs (counted from when it starts)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    live = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        # an op's own allocations (its children report theirs), and frees outside any op
        live += event.cpu_memory_usage if event.name == "[memory]" else event.self_cpu_memory_usage
        peak = max(peak, live)
    return peak


def tiny_teacher() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig(width="tiny", num_classes=NUM_CLASSES)).eval()


def test_flip_at_2x_costs_no_more_than_one_extra_canvas():
    model = tiny_teacher()
    x = torch.randn(1, 3, 64, 128)
    plain = peak_bytes(lambda: predict_logits(model, x, SCALES, keys={"pred"}))
    flipped = peak_bytes(lambda: predict_logits(model, x, SCALES, flip=True, keys={"pred"}))
    canvas = NUM_CLASSES * 64 * 128 * 4  # the first pass's fused logits, kept while the flipped pass runs
    mirrored_input = x.numel() * 4
    print(f"peak: {plain / 1e6:.2f} MB without flip, {flipped / 1e6:.2f} MB with flip (canvas {canvas / 1e6:.2f} MB)")
    # what flip averaging of every output used to hold: pred_2.0x alone is 4 canvases, twice
    assert flipped <= plain + canvas + mirrored_input + 0.02 * plain


def test_flip_averages_only_the_kept_keys():
    model = tiny_teacher()
    x = torch.randn(1, 3, 32, 64)
    out = predict_logits(model, x, SCALES, flip=True, keys={"pred", "attn_1.0x"})
    assert set(out) == {"pred", "attn_1.0x"} and all(v.dtype == torch.float32 for v in out.values())


def test_tiled_evaluation_stitches_only_the_fused_logits(monkeypatch):
    seen = []
    real = evaluation_module.predict_logits

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        seen.append(set(out))
        return out

    monkeypatch.setattr(evaluation_module, "predict_logits", spy)
    model = tiny_teacher()
    sample = _labelled_sample(monkeypatch)
    settings = EvalSettings(scales=SCALES, tile_size=64)
    evaluate_model(model, [sample], None, [str(i) for i in range(NUM_CLASSES)], settings=settings)
    assert seen == [{"pred"}]
    # and what the key list saves: per-scale canvases of a tiled pass at 2.0x
    x = torch.randn(1, 3, 32, 64)
    assert peak_bytes(lambda: real(model, x, SCALES, tile_size=64, keys={"pred"})) < 0.5 * peak_bytes(
        lambda: real(model, x, SCALES, tile_size=64)
    )


def _labelled_sample(monkeypatch):
    """One 32x64 image with a label, served without files."""
    import numpy as np

    from autolabel.data import loading
    from autolabel.data.datasets import Sample

    image = np.random.default_rng(0).integers(0, 255, (32, 64, 3), dtype=np.uint8)
    label = np.zeros((32, 64), dtype=np.uint8)
    monkeypatch.setattr(loading, "read_image", lambda path, max_pixels=None: image)
    monkeypatch.setattr(loading, "read_label", lambda path, lut=None, max_pixels=None: label)
    return Sample(id="a", image=Path("a.png"), label=Path("a_label.png"))
