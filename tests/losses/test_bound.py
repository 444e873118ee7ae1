import math

import pytest
import torch
import torch.nn.functional as F

from raysynth.losses import bound_loss, discrepancy_term, robustness_term

# h outputs (2-d) placed so every distance is easy to do by hand
H_REAL = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
P_REAL = torch.tensor([0, 1])
H_SYN = torch.tensor([[0.0, 1.0], [0.0, 3.0], [3.0, 4.0], [5.0, 5.0]])
P_SYN = torch.tensor([0, 0, 1, 2])  # region 2 has no real sample: outside T


def test_discrepancy_matches_a_hand_worked_example():
    # T = {0, 1}, g_0 = 2, g_1 = 1, g = 3
    # region 0: |s0-u0| = 1, |s0-u1| = 3 -> mean 2; region 1: |s1-u2| = |(-2,-4)| = sqrt(20)
    expected = 2 / 3 * 2 + 1 / 3 * math.sqrt(20)
    assert discrepancy_term(H_REAL, P_REAL, H_SYN, P_SYN).item() == pytest.approx(expected, rel=1e-6)


def test_robustness_matches_a_hand_worked_example():
    # region 0: ordered pairs of {u0, u1} incl. u1 = u2: 0 + 2 + 2 + 0 = 4, / g_0 = 2
    # region 1: one sample -> 0; region 2 is outside T. Total (1/g) * 2 with g = 3
    assert robustness_term(H_SYN, P_SYN, P_REAL).item() == pytest.approx(2 / 3, rel=1e-6)


def test_mse_distance_is_the_official_codes_variant():
    # region 0: mean sq diff (0+1)/2 = 0.5 and (0+9)/2 = 4.5 -> 2.5; region 1: (4+16)/2 = 10
    expected = 2 / 3 * 2.5 + 1 / 3 * 10
    assert discrepancy_term(H_REAL, P_REAL, H_SYN, P_SYN, distance="mse").item() == pytest.approx(expected)


def test_discrepancy_is_zero_when_real_and_synthetic_outputs_coincide():
    h = torch.tensor([[0.2, 0.8], [0.6, 0.4]])
    assert discrepancy_term(h, torch.tensor([0, 1]), h.repeat(3, 1), torch.tensor([0, 1] * 3)).item() == 0.0


def test_robustness_is_zero_for_identical_synthetic_outputs_per_region_and_has_finite_gradients():
    h = torch.tensor([[0.1, 0.9], [0.1, 0.9], [0.7, 0.3]], requires_grad=True)
    parts = torch.tensor([0, 0, 1])
    r = robustness_term(h, parts, torch.tensor([0, 1]))
    assert r.item() == 0.0
    r.backward()  # u1 = u2 pairs have distance 0: the gradient must not be NaN there
    assert torch.isfinite(h.grad).all()


def test_bound_loss_without_regularisers_is_the_weighted_cross_entropies():
    g = torch.Generator().manual_seed(0)
    out_real, out_syn = torch.randn(6, 3, generator=g), torch.randn(8, 3, generator=g)
    y_real = torch.tensor([0, 1, 2, 0, 1, 2])
    soft = torch.softmax(torch.randn(8, 3, generator=g), 1)
    parts_r, parts_s = torch.randint(0, 3, (6,), generator=g), torch.randint(0, 3, (8,), generator=g)
    loss = bound_loss(out_real, y_real, parts_r, out_syn, soft, parts_s, lam=4.0, lam1=0.0, lam2=0.0)
    expected = 4.0 * F.cross_entropy(out_real, y_real) - (soft * F.log_softmax(out_syn, 1)).sum(1).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    hard = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    loss_hard = bound_loss(out_real, y_real, parts_r, out_syn, hard, parts_s, lam=1.0, lam1=0.0, lam2=0.0)
    assert loss_hard.item() == pytest.approx((F.cross_entropy(out_real, y_real) + F.cross_entropy(out_syn, hard)).item())


def test_bound_loss_adds_the_weighted_terms_on_softmax_outputs_and_gradients_flow():
    g = torch.Generator().manual_seed(1)
    out_real = torch.randn(4, 3, generator=g, requires_grad=True)
    out_syn = torch.randn(6, 3, generator=g, requires_grad=True)
    y_real, y_syn = torch.tensor([0, 1, 2, 0]), torch.tensor([0, 1, 2, 0, 1, 2])
    pr, ps = torch.tensor([0, 1, 1, 0]), torch.tensor([0, 0, 1, 1, 2, 1])
    total, terms = bound_loss(out_real, y_real, pr, out_syn, y_syn, ps, lam=2.0, lam1=0.3, lam2=5.0, return_terms=True)
    disc = discrepancy_term(out_real.softmax(1), pr, out_syn.softmax(1), ps)
    rob = robustness_term(out_syn.softmax(1), ps, pr)
    assert terms["discrepancy"].item() == pytest.approx(disc.item()) and disc > 0 and rob > 0
    expected = 2.0 * terms["ce_real"] + terms["ce_syn"] + 0.3 * disc + 5.0 * rob
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    total.backward()
    assert out_real.grad.abs().sum() > 0 and out_syn.grad.abs().sum() > 0


def test_bound_regularisers_pull_synthetic_outputs_toward_the_real_ones():
    """A few gradient steps on the discrepancy term alone shrink it."""
    g = torch.Generator().manual_seed(2)
    out_real = torch.randn(4, 3, generator=g)
    out_syn = torch.randn(6, 3, generator=g, requires_grad=True)
    pr, ps = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 0, 0, 1, 1, 1])
    opt = torch.optim.SGD([out_syn], lr=1.0)
    start = discrepancy_term(out_real.softmax(1), pr, out_syn.softmax(1), ps).item()
    for _ in range(50):
        loss = discrepancy_term(out_real.softmax(1), pr, out_syn.softmax(1), ps)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.7 * start


def _official_terms(logit_real, part_real, logit_syn, part_syn, g):
    """The official full code's regularisers (Fsoft-AIC/ProtoAug, classify/main.py),
    written again region by region: logit MSE, g the pool's size (a constant), the
    discrepancy's pair sum over g·|S_i|, robustness over unordered pairs u1 < u2 of
    regions holding real samples, over g·|G_i|."""
    disc, rob = 0.0, 0.0
    for region in sorted(set(part_real.tolist()) | set(part_syn.tolist())):
        real = logit_real[part_real == region]
        syn = logit_syn[part_syn == region]
        if len(real) and len(syn):
            pairwise = (real.unsqueeze(1) - syn.unsqueeze(0)).pow(2).mean(-1)  # F.mse_loss, broadcast
            disc += pairwise.sum() * (1.0 / (g * len(real)))
        if len(syn) > 1 and len(real):
            pairwise = (syn.unsqueeze(1) - syn.unsqueeze(0)).pow(2).mean(-1)
            upper = torch.triu_indices(len(syn), len(syn), offset=1)
            rob += pairwise[upper[0], upper[1]].sum() * (1.0 / g) * (1.0 / len(syn))
    return disc, rob


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pool_normalisation_is_the_official_code(seed):
    g = torch.Generator().manual_seed(seed)
    logit_real, logit_syn = torch.randn(32, 10, generator=g), torch.randn(32, 10, generator=g) * 2
    part_real, part_syn = torch.randint(0, 6, (32,), generator=g), torch.randint(0, 7, (32,), generator=g)
    pool = 200 * 500  # CUB: 500 images per class, 200 classes
    disc, rob = _official_terms(logit_real, part_real, logit_syn, part_syn, pool)
    _, terms = bound_loss(logit_real, torch.zeros(32, dtype=torch.long), part_real, logit_syn, torch.zeros(32, dtype=torch.long),
                          part_syn, output="logits", distance="mse", normalise="pool", pool_images=pool, return_terms=True)
    assert terms["discrepancy"].item() == pytest.approx(float(disc), rel=1e-6, abs=1e-12)
    assert terms["robustness"].item() == pytest.approx(float(rob), rel=1e-6, abs=1e-12)
    assert float(disc) > 0 and float(rob) > 0
    # the paper's form normalises by the batch's synthetic rows: the same discrepancy
    # times pool / (rows in shared regions), robustness twice that (ordered pairs)
    in_t = sum(int((part_real == int(p)).any()) for p in part_syn)
    _, paper = bound_loss(logit_real, torch.zeros(32, dtype=torch.long), part_real, logit_syn, torch.zeros(32, dtype=torch.long),
                          part_syn, output="logits", distance="mse", normalise="batch", return_terms=True)
    assert paper["discrepancy"].item() == pytest.approx(float(disc) * pool / in_t, rel=1e-5)
    assert paper["robustness"].item() == pytest.approx(2 * float(rob) * pool / in_t, rel=1e-5)


@pytest.mark.parametrize("normalise", ["pool", "batch"])
def test_a_class_trusted_at_zero_adds_nothing_to_the_regularisers(normalise):
    """UniCon's w_c gates the regularisers: class 2 at w = 0 is as if its synthetic rows
    were not in the batch; at w = 1 it is the unweighted loss."""
    g = torch.Generator().manual_seed(5)
    out_real, out_syn = torch.randn(12, 3, generator=g), torch.randn(18, 3, generator=g)
    part_real, part_syn = torch.arange(12) % 3, torch.arange(18) % 4
    syn_class = (torch.arange(18) // 2) % 3
    y_real, y_syn = torch.arange(12) % 3, syn_class
    kwargs = dict(lam1=0.7, lam2=3.0, normalise=normalise, pool_images=90, return_terms=True)
    weights = torch.tensor([1.0, 1.0, 0.0])
    _, gated = bound_loss(out_real, y_real, part_real, out_syn, y_syn, part_syn, sample_weights=weights[syn_class], **kwargs)
    keep = syn_class != 2
    _, without = bound_loss(out_real, y_real, part_real, out_syn[keep], y_syn[keep], part_syn[keep], **kwargs)
    for name in ("discrepancy", "robustness"):
        assert gated[name].item() == pytest.approx(without[name].item(), rel=1e-6), name
    _, plain = bound_loss(out_real, y_real, part_real, out_syn, y_syn, part_syn, **kwargs)
    _, ones = bound_loss(out_real, y_real, part_real, out_syn, y_syn, part_syn, sample_weights=torch.ones(18), **kwargs)
    assert all(plain[n].item() == pytest.approx(ones[n].item(), rel=1e-6) for n in ("discrepancy", "robustness"))
    assert gated["discrepancy"].item() != pytest.approx(plain["discrepancy"].item(), rel=1e-3)
