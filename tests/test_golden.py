"""Golden outputs: fixed inputs and seeds, an expected slice compared with a tolerance (as
diffusers' own tests pin ``expected_slice``). A change to the tiny backbone's forward,
the morph or ddpm generators or the loss of a training step shows here as a number,
where a range check would let it pass. Regenerate a slice only for an intended change,
and say so in the commit."""

import torch

from raysynth.config import LoraConfig, PoolConfig, TrainConfig
from raysynth.data.base import ImageSet
from raysynth.generators import create_generator
from raysynth.losses import parse_loss
from raysynth.models.backbone import create_model
from raysynth.models.classifier import build_classifier
from raysynth.train.loop import TrainData, train_few_shot

CLASSES = ["a", "b", "c"]
RTOL, ATOL = 1e-3, 1e-5  # float32 on another CPU's kernels; the slices are printed to 6 decimals


def _close(actual, expected):
    assert torch.allclose(torch.tensor(actual, dtype=torch.float32), torch.tensor(expected), rtol=RTOL, atol=ATOL), actual


def _shots():
    g = torch.Generator().manual_seed(0)
    return ImageSet(torch.rand(6, 3, 32, 32, generator=g), torch.arange(3).repeat_interleave(2))


def test_tiny_backbone_forward():
    torch.manual_seed(0)
    clip = create_model("raysynth-tiny")
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        features = clip.encode_image(x)
    assert features.shape == (2, 64)
    _close(features[0, :6].tolist(), [-0.222921, 1.131977, -1.265454, -1.197575, 0.247828, -1.249593])
    _close(features[1, -4:].tolist(), [0.253153, -0.024578, 1.675897, 1.807162])


def test_morph_generator():
    shots = _shots()
    generator = create_generator(PoolConfig(generator="morph"), CLASSES)
    generator.fit(shots)
    out, labels = generator.translate(shots.images[:2], torch.tensor([1, 2]), 0.7, torch.tensor([3, 4]))
    assert labels.tolist() == [1, 2]
    _close(out[0, 0, 10, 10:16].tolist(), [0.348687, 0.365779, 0.760272, 0.646105, 0.498704, 0.453106])
    _close(out[1, 2, 5, :4].tolist(), [0.138293, 0.292931, 0.082395, 0.231648])


def test_ddpm_generator():
    shots = _shots()
    torch.manual_seed(0)
    options = {"channels": [8, 16], "train_steps": 3, "batch_size": 8, "inference_steps": 6}
    generator = create_generator(PoolConfig(generator="ddpm", options=options), CLASSES)
    generator.fit(shots)
    out, _ = generator.translate(shots.images[:2], torch.tensor([1, 2]), 0.8, torch.tensor([5, 6]))
    _close(out[0, 0, 10, 10:16].tolist(), [0.098180, 0.122602, 0.147024, 0.171446, 0.277940, 0.466506])
    _close(out[1, 1, 3, :4].tolist(), [0.644556, 0.644556, 0.589975, 0.480814])


def _blobs(n, g, classes=3, size=32):
    labels = torch.arange(n) % classes
    images = torch.rand(n, 3, size, size, generator=g) * 0.2
    for c in range(classes):
        images[labels == c, c] += 0.8
    return images, labels


def test_one_training_step_of_the_bound_loss():
    """LoRA on the tiny backbone, one step of the bound objective: the loss and each term."""
    g = torch.Generator().manual_seed(0)
    (x, y), (vx, vy), (sx, sy) = _blobs(12, g), _blobs(30, g), _blobs(24, g)
    data = TrainData(x, y, vx, vy, 3, sx, torch.nn.functional.one_hot(sy, 3).float(), sy)
    data.real_part, data.syn_part = y.clone(), sy.clone()
    torch.manual_seed(0)
    model = build_classifier(create_model("raysynth-tiny"), 3, LoraConfig())
    config = TrainConfig(epochs=1, steps_per_epoch=1, batch_real=6, batch_syn=6, lr=1e-2, n_contr=1, threads=1)
    metrics = train_few_shot(model, data, config, objectives=parse_loss({"bound": {}}), protocol="joint").metrics
    _close([metrics.loss], [6.702803])
    terms = metrics.terms
    _close([terms["ce_real"], terms["ce_syn"], terms["discrepancy"], terms["robustness"]], [5.703848, 0.997016, 0.000481, 0.001458])
