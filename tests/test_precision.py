"""Mixed-precision labelling: bf16 autocast against fp32, fp32 exactly as before, the fp32 islands."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from autolabel.classes import CITYSCAPES
from autolabel.config import ModelConfig
from autolabel.data.datasets import discover_cityscapes
from autolabel.data.io import read_image, read_label
from autolabel.generate.teacher import threshold_batch
from autolabel.labelset.confidence import make_ladder
from autolabel.models import build_model
from autolabel.models.ocr import spatial_gather
from autolabel.models.predict import normalise, predict_logits

SCALES = (0.5, 1.0, 2.0)  # the demo's labelling scales
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def load_split(root, split):
    """uint8 images (N, H, W, 3) and train-id labels (N, H, W) of a synthetic-city split."""
    samples = discover_cityscapes(root, split)
    lut = CITYSCAPES.label_to_train_lut()
    images = np.stack([read_image(s.image) for s in samples])
    labels = np.stack([read_label(s.label, lut) for s in samples]) if samples[0].label else None
    return torch.from_numpy(images), None if labels is None else torch.from_numpy(labels)


@pytest.fixture(scope="module")
def city(synthetic_city):
    return synthetic_city(train=8, val=8, extra=0, size=(128, 64), seed=3)


@pytest.fixture(scope="module")
def demo_like_teacher(city):
    """The demo's teacher in miniature: tiny HRNetV2-OCR, hierarchical attention trained on 0.5/1.0, fit to
    the synthetic city's fine labels for long enough to be confident where the demo teacher is."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(width="tiny", num_classes=19))
    images, labels = load_split(city, "train")
    x = normalise(images, MEAN, STD)
    y = labels.long()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for step in range(60):
        batch = torch.arange(4) + 4 * (step % 2)
        out = model(x[batch])
        loss = F.cross_entropy(out["pred"], y[batch], ignore_index=255)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def test_bf16_labels_agree_with_fp32_on_almost_every_pixel(demo_like_teacher, city):
    images, _ = load_split(city, "val")
    x = normalise(images, MEAN, STD)
    fp32 = predict_logits(demo_like_teacher, x, SCALES)["pred"]
    bf16 = predict_logits(demo_like_teacher, x, SCALES, precision=torch.bfloat16)["pred"]
    assert bf16.dtype == torch.float32  # cast back as it leaves the model
    assert not torch.equal(bf16, fp32)  # the forward really ran in bf16
    ladder = make_ladder(0.5)
    a, b = threshold_batch(fp32, 0.5, ladder), threshold_batch(bf16, 0.5, ladder)
    argmax_agreement = (fp32.argmax(1) == bf16.argmax(1)).float().mean().item()
    label_agreement = (a.labels == b.labels).float().mean().item()
    print(f"bf16 vs fp32: argmax {100 * argmax_agreement:.2f} %, thresholded labels {100 * label_agreement:.2f} %")
    # the demo's own teacher (48 epochs) agrees on 99.80 % (argmax) and 99.63 % (thresholded) of 4.9 M pixels;
    # this one, fit in seconds, is less sure of itself, so more of its pixels sit at p = 0.5, where the
    # threshold is a second boundary to fall on either side of
    assert argmax_agreement >= 0.995
    assert label_agreement >= 0.99
    assert (a.labels != 255).float().mean() > 0.5  # a teacher confident enough for the comparison to mean much


def test_fp32_prediction_is_exactly_the_models_own_forward(demo_like_teacher):
    x = torch.randn(2, 3, 32, 64, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        direct = demo_like_teacher(x, scales=list(SCALES))
        mirrored = demo_like_teacher(x.flip(-1), scales=list(SCALES))
    plain = predict_logits(demo_like_teacher, x, SCALES)
    flipped = predict_logits(demo_like_teacher, x, SCALES, flip=True, keys={"pred", "attn_0.5x"})
    for key, value in direct.items():
        assert torch.equal(plain[key], value), key
    for key in ("pred", "attn_0.5x"):
        assert torch.equal(flipped[key], 0.5 * (direct[key] + mirrored[key].flip(-1))), key


def test_the_ocr_spatial_gather_stays_fp32_under_autocast():
    gen = torch.Generator().manual_seed(5)
    feats = torch.randn(1, 8, 64, 128, generator=gen)
    logits = 4 * torch.randn(1, 19, 64, 128, generator=gen)
    exact = spatial_gather(feats, logits)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = spatial_gather(feats, logits)
        # what it would be with autocast left on: the matmul in bf16
        naive = torch.matmul(torch.softmax(logits.reshape(1, 19, -1), 2), feats.reshape(1, 8, -1).transpose(1, 2))
    assert mixed.dtype == torch.float32
    assert torch.equal(mixed, exact)
    assert naive.dtype == torch.bfloat16  # so the test would see a gather that ran in bf16


def test_thresholding_is_fp32_whatever_the_logits_dtype():
    logits = torch.tensor([[[[2.0]], [[1.0]]]]).to(torch.bfloat16)  # (1, 2, 1, 1): p = 0.731
    result = threshold_batch(logits, 0.7, make_ladder(0.7, 0.01, 0.75))
    assert result.labels.item() == 0 and result.mean_confidence.dtype == torch.float64  # exact mean
    assert result.codes.item() == 4  # 0.73 < p <= 0.74 on a float32 ladder


def test_generate_and_evaluate_take_a_precision(tmp_path, demo_like_teacher, city):
    from autolabel.api import evaluate_checkpoint, generate_labels
    from autolabel.errors import ConfigError
    from autolabel.labelset import read_manifest
    from autolabel.models.checkpoint import save_checkpoint

    ckpt = tmp_path / "teacher.pt"
    save_checkpoint(ckpt, demo_like_teacher, ModelConfig(width="tiny", num_classes=19), CITYSCAPES.names)
    spec = f"cityscapes:{city}:val"
    result = generate_labels(ckpt, spec, tmp_path / "bf16", device="cpu", precision="bf16", scales=SCALES)
    assert result.ok == 8 and read_manifest(tmp_path / "bf16").num_rows == 8
    with pytest.raises(ConfigError, match="generate.precision"):
        generate_labels(ckpt, spec, tmp_path / "x", precision="half")
    fp32 = evaluate_checkpoint(ckpt, spec, device="cpu", precision="fp32")
    bf16 = evaluate_checkpoint(ckpt, spec, device="cpu", precision="bf16")
    assert abs(fp32["miou"] - bf16["miou"]) < 0.01
    with pytest.raises(ConfigError, match="precision 'half'"):
        evaluate_checkpoint(ckpt, spec, device="cpu", precision="half")
