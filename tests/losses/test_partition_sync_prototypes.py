import math

import pytest
import torch
import torch.nn.functional as F

from raysynth.losses import (
    OnlineKMeans,
    PrototypeHead,
    kmeans_partition,
    nonl_loss,
    ntce_loss,
    simplex_etf,
    sync_loss,
)


def _blobs(seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    truth = torch.arange(60) % 3
    return centres[truth] + 0.3 * torch.randn(60, 2, generator=g), truth


def test_faiss_kmeans_recovers_separated_blobs_deterministically():
    x, truth = _blobs()
    labels, centroids = kmeans_partition(x, 3, niter=50, seed=0)
    assert labels.dtype == torch.int64 and centroids.shape == (3, 2)
    # the same partition as the truth, up to renaming the regions
    pairs = {(int(a), int(b)) for a, b in zip(labels, truth)}
    assert len(pairs) == 3
    again, _ = kmeans_partition(x, 3, niter=50, seed=0)
    assert torch.equal(labels, again)
    with pytest.raises(ValueError, match="k=61"):
        kmeans_partition(x, 61)


def test_online_kmeans_centres_are_running_means_of_their_points():
    x, truth = _blobs(1)
    km = OnlineKMeans(torch.tensor([[0.5, 0.5], [9.0, 1.0], [1.0, 9.0]]))
    first = km.partial_fit(x[:30])
    second = km.partial_fit(x[30:])
    assigned = torch.cat([first, second])
    assert torch.equal(assigned, truth)
    for c in range(3):
        assert torch.allclose(km.centroids[c], x[assigned == c].mean(0), atol=1e-5)
    assert km.counts.tolist() == [20.0, 20.0, 20.0]


@pytest.mark.parametrize("classes,dim", [(2, 1), (5, 4), (10, 64), (200, 256)])
def test_simplex_etf_gram_matrix_is_exact(classes, dim):
    etf = simplex_etf(classes, dim, seed=3)
    assert etf.shape == (classes, dim)
    expected = torch.full((classes, classes), -1.0 / (classes - 1))
    expected.fill_diagonal_(1.0)
    assert torch.allclose(etf @ etf.T, expected, atol=1e-6)


def test_simplex_etf_rejects_too_few_dimensions():
    with pytest.raises(ValueError, match="dim >= 4"):
        simplex_etf(5, 3)


def test_sync_loss_matches_a_hand_worked_example():
    prototypes = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])  # the 2-class ETF
    features = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])  # a real 0 on its prototype, a synthetic 0 on the other
    labels, synthetic, parts = torch.tensor([0, 0]), torch.tensor([False, True]), torch.tensor([0, 0])
    total, terms = sync_loss(features, labels, synthetic, parts, prototypes, temperature=1.0, return_terms=True)
    assert terms["fidelity"].item() == pytest.approx(1.0)  # (0 + 2) / 2
    assert terms["regional"].item() == pytest.approx(math.log(1 + math.e**2))  # -log e^-1/(e^-1 + e^1)
    assert total.item() == pytest.approx(1.0 + math.log(1 + math.e**2))


def test_sync_regional_term_only_contrasts_classes_present_in_the_region():
    etf = simplex_etf(3, 2)
    raw = torch.stack([etf[0], etf[1], etf[1] * 0.9 + etf[0] * 0.1])  # row 2: a synthetic 0 confused with 1
    labels, synthetic = torch.tensor([0, 2, 0]), torch.tensor([False, False, True])
    def regional(parts):
        return sync_loss(raw, labels, synthetic, parts, etf, temperature=1.0, return_terms=True)[1]["regional"]

    alone, shared = regional(torch.tensor([0, 1, 0])), regional(torch.tensor([0, 0, 0]))
    assert shared > alone > 0  # class 2 shares the region: one more negative prototype
    features = raw.clone().requires_grad_(True)
    sync_loss(features, labels, synthetic, torch.tensor([0, 0, 0]), etf).backward()
    assert features.grad[2].abs().sum() > 0


def test_no_regional_term_when_every_synthetic_feature_is_classified_right():
    etf = simplex_etf(3, 4)
    _, terms = sync_loss(etf, torch.arange(3), torch.ones(3, dtype=torch.bool), torch.zeros(3, dtype=torch.long), etf, return_terms=True)
    assert terms["regional"].item() == 0.0 and terms["fidelity"].item() == pytest.approx(0.0, abs=1e-6)


def test_prototype_head_and_losses():
    head = PrototypeHead(3, 4, kind="etf", temperature=0.5)
    logits = head(head.prototypes * 3.0)  # features on the prototypes, any norm
    assert torch.equal(logits.argmax(1), torch.arange(3))
    assert logits[0, 0].item() == pytest.approx(2.0)  # cos 1 / 0.5
    assert not any(p.requires_grad for p in head.parameters())  # fixed, never trained
    x = torch.tensor([[2.0, 1.0, 0.0]])
    assert ntce_loss(x, torch.tensor([0])).item() == pytest.approx(F.cross_entropy(x, torch.tensor([0])).item())
    assert nonl_loss(x, torch.tensor([0])).item() == pytest.approx(-2.0 + math.log(math.e + 1.0))
    soft = torch.tensor([[0.5, 0.5, 0.0]])
    assert nonl_loss(x, soft).item() == pytest.approx(0.5 * (-2 + math.log(math.e + 1)) + 0.5 * (-1 + math.log(math.e**2 + 1)))


def test_class_mean_head_predicts_its_own_class_means():
    head = PrototypeHead(2, 3, kind="class_means")
    features = torch.tensor([[1.0, 0.0, 0.0], [0.9, 0.1, 0.0], [0.0, 0.0, 1.0]])
    head.set_class_means(features, torch.tensor([0, 0, 1]))
    assert torch.equal(head(features).argmax(1), torch.tensor([0, 0, 1]))
