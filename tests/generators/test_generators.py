import pytest
import torch

from raysynth.config import ConfigError, PoolConfig
from raysynth.data.base import ImageSet
from raysynth.generators import GENERATORS, create_generator
from raysynth.generators.quality import parse_quality, partner_class, quality_controlled_shots
from raysynth.pool.labels import diffmix_soft_labels


def _shots(num_classes=3, k=4, size=16):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(num_classes * k, 3, size, size, generator=g)
    labels = torch.arange(num_classes).repeat_interleave(k)
    return ImageSet(images, labels)


# the backends that learn from the shots; stable_diffusion has its own tests (tiny pipeline)
TINY_OPTIONS = {
    "morph": {},
    "ddpm": {"channels": [8, 16], "train_steps": 3, "batch_size": 8, "inference_steps": 6},
}


def test_every_backend_is_tested():
    assert set(GENERATORS) == set(TINY_OPTIONS) | {"stable_diffusion"}


@pytest.mark.parametrize("name", sorted(TINY_OPTIONS))
def test_every_generator_is_deterministic_and_in_range(name):
    shots = _shots()
    gen = create_generator(PoolConfig(generator=name, options=TINY_OPTIONS[name]), ["a", "b", "c"])
    gen.fit(shots)
    refs = shots.images[:5]
    targets = torch.tensor([1, 2, 0, 1, 2])
    seeds = torch.tensor([11, 12, 13, 14, 15])
    a, la = gen.translate(refs, targets, 0.7, seeds)
    b, _ = gen.translate(refs, targets, 0.7, seeds)
    c, _ = gen.translate(refs, targets, 0.7, seeds + 100)
    assert a.shape == refs.shape and torch.equal(la, targets)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1


def test_morph_strength_interpolates_toward_target():
    shots = _shots()
    gen = create_generator(PoolConfig(generator="morph"), ["a", "b", "c"])
    gen.fit(shots)
    refs = shots.images[:1]
    seeds = torch.tensor([3])
    low, _ = gen.translate(refs, torch.tensor([2]), 0.1, seeds)
    high, _ = gen.translate(refs, torch.tensor([2]), 0.9, seeds)
    assert (low - refs).abs().mean() < (high - refs).abs().mean()


@pytest.mark.parametrize("s, gamma", [(0.5, 0.5), (0.7, 1.0), (0.9, 0.1)])
def test_diffmix_soft_labels(s, gamma):
    target = torch.tensor([2, 1])
    reference = torch.tensor([0, 1])  # second row: Diff-Aug (same class)
    labels = diffmix_soft_labels(target, reference, s, gamma, num_classes=3)
    assert labels[0, 2] == pytest.approx(s**gamma, abs=1e-6)
    assert labels[0, 0] == pytest.approx(1 - s**gamma, abs=1e-6)
    assert labels[1].tolist() == pytest.approx([0.0, 1.0, 0.0])
    assert labels.sum(1).tolist() == pytest.approx([1.0, 1.0])


def test_quality_control():
    shots = _shots(num_classes=4)
    out = quality_controlled_shots(shots, ["a", "b", "c", "d"], {"a": "counter", "b": "morph:0.25"})
    a, b = 0, 1
    # degraded classes swap partners (UniCon's MNIST_1_0): a is made of b's images and back
    pa, pb = partner_class(a, 4, [a, b]), partner_class(b, 4, [a, b])
    assert (pa, pb) == (b, a) and partner_class(2, 4) == 0
    assert torch.equal(out.images[shots.labels == a], shots.images[shots.labels == pa])
    mixed = 0.25 * shots.images[shots.labels == b] + 0.75 * shots.images[shots.labels == pb]
    assert torch.allclose(out.images[shots.labels == b], mixed)
    assert torch.equal(out.images[shots.labels == 2], shots.images[shots.labels == 2])  # faithful
    assert torch.equal(out.labels, shots.labels)
    assert parse_quality("morph:0.3") == ("morph", 0.3)
    with pytest.raises(ConfigError):
        parse_quality("morph:2")
