import math

import pytest
import torch
import torch.nn.functional as F

from raysynth.losses import supcon_loss, unicon_loss


def _batch():
    # v0, v1 real class 0; v2 synthetic class 0; v3 real class 1 (unit vectors, tau = 1)
    features = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [-1.0, 0.0]])
    labels = torch.tensor([0, 0, 0, 1])
    synthetic = torch.tensor([False, False, True, False])
    return features, labels, synthetic


def test_unicon_matches_a_hand_worked_batch():
    features, labels, synthetic = _batch()
    w = torch.tensor([0.5, 1.0])
    # anchor 0: A = {1, 2, 3}, sims 0, 1, -1; P = {1}; U = {2}
    d0 = 1 + math.e + 1 / math.e
    l0 = -(0 - math.log(d0)) - 0.5 * (1 - math.log(d0))
    # anchor 1: all sims 0, so every log-probability is -log 3; P = {0}, U = {2}
    l1 = math.log(3) + 0.5 * math.log(3)
    # anchor 3 (class 1) has no positive and no synthetic partner: not averaged
    expected = (l0 + l1) / 2
    assert unicon_loss(features, labels, synthetic, w, temperature=1.0).item() == pytest.approx(expected, rel=1e-6)


def test_unicon_with_zero_weights_is_supcon_reals_positive_term_on_the_same_batch():
    g = torch.Generator().manual_seed(0)
    features = F.normalize(torch.randn(12, 8, generator=g), dim=1)
    labels = torch.tensor([0, 1, 2] * 4)
    synthetic = torch.tensor([False] * 6 + [True] * 6)
    loss = unicon_loss(features, labels, synthetic, torch.zeros(3), temperature=0.5)
    # by hand: anchors are the real rows, positives the other real rows of the class,
    # the denominator every other row of the batch (synthetic ones included)
    sim = features @ features.T / 0.5
    per = []
    for i in range(6):
        others = [a for a in range(12) if a != i]
        log_den = torch.logsumexp(sim[i, others], 0)
        pos = [p for p in range(6) if p != i and labels[p] == labels[i]]
        per.append(-torch.stack([sim[i, p] - log_den for p in pos]).mean())
    assert loss.item() == pytest.approx(torch.stack(per).mean().item(), rel=1e-5)


def test_unicon_without_synthetic_rows_equals_supcon_real():
    g = torch.Generator().manual_seed(1)
    features = F.normalize(torch.randn(10, 4, generator=g), dim=1)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 0, 1, 2, 2])
    none = torch.zeros(10, dtype=torch.bool)
    w = torch.rand(3, generator=g)
    assert unicon_loss(features, labels, none, w).item() == pytest.approx(supcon_loss(features, labels).item(), rel=1e-6)


def test_class_weight_scales_only_that_class_synthetic_term():
    features, labels, synthetic = _batch()
    low = unicon_loss(features, labels, synthetic, torch.tensor([0.0, 1.0]), temperature=1.0)
    high = unicon_loss(features, labels, synthetic, torch.tensor([1.0, 1.0]), temperature=1.0)
    other = unicon_loss(features, labels, synthetic, torch.tensor([0.0, 7.0]), temperature=1.0)
    assert high > low and other.item() == pytest.approx(low.item())  # class 1 has no synthetic rows


def test_supcon_mixed_differs_from_real_and_gradients_reach_the_features():
    g = torch.Generator().manual_seed(2)
    raw = torch.randn(8, 4, generator=g, requires_grad=True)
    features = F.normalize(raw, dim=1)
    labels = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1])
    synthetic = torch.tensor([False] * 4 + [True] * 4)
    mixed = supcon_loss(features, labels)  # synthetic rows treated as real
    real = supcon_loss(features[~synthetic], labels[~synthetic])
    assert mixed.item() != pytest.approx(real.item())
    unicon_loss(features, labels, synthetic, torch.ones(2)).backward()
    assert raw.grad is not None and torch.isfinite(raw.grad).all() and raw.grad.abs().sum() > 0
