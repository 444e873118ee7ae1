"""The lightweight variant's regularisers over all data (raysynth/losses/memory.py):
the same numbers as eq. 7's terms computed on every sample at once, the gradient only
through the batch's rows, unseen samples left out, and the config path to it."""

import pytest
import torch
from test_objectives import _data, _model

from raysynth.config import PartitionConfig, TrainConfig
from raysynth.losses import discrepancy_term, parse_loss, robustness_term
from raysynth.losses.memory import OutputMemory, all_data_terms
from raysynth.train.loop import train_few_shot

N_REAL, N_SYN, C = 10, 30, 4


def _samples(seed=0):
    g = torch.Generator().manual_seed(seed)
    real_part = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3, 0, 1])  # region 3: real only
    syn_part = torch.randint(0, 3, (N_SYN,), generator=g)
    syn_part[:4] = 4  # region 4: synthetic only (not in T)
    return torch.randn(N_REAL, C, generator=g), real_part, torch.randn(N_SYN, C, generator=g), syn_part


def _stored(real_out, real_part, syn_out, syn_part, real_rows=None, syn_rows=None):
    memory = OutputMemory(N_REAL, N_SYN, C)
    real_rows = torch.arange(N_REAL) if real_rows is None else real_rows
    syn_rows = torch.arange(N_SYN) if syn_rows is None else syn_rows
    memory.store("real", real_rows, real_out[real_rows], real_part[real_rows])
    memory.store("syn", syn_rows, syn_out[syn_rows], syn_part[syn_rows])
    return memory


@pytest.mark.parametrize("output, distance, normalise", [("softmax", "l2", "batch"), ("logits", "mse", "batch"),
                                                         ("logits", "mse", "pool")])
@pytest.mark.parametrize("weighted", [False, True])
def test_all_data_terms_equal_eq7_terms_on_every_sample(output, distance, normalise, weighted):
    real_out, real_part, syn_out, syn_part = _samples()
    memory = _stored(real_out, real_part, syn_out, syn_part)
    idx, sidx = torch.tensor([1, 4]), torch.tensor([5, 9, 20])
    h = (lambda x: x.softmax(-1)) if output == "softmax" else (lambda x: x)
    # per-sample weights (UniCon's w_c of each synthetic sample's class), one at 0
    w = torch.linspace(0.0, 1.0, N_SYN) if weighted else None
    same = dict(normalise=normalise, pool_images=N_SYN * 3, syn_weights=w)
    disc, rob = all_data_terms(memory, (idx, real_out[idx], real_part[idx]), (sidx, syn_out[sidx], syn_part[sidx]), h,
                               distance, **same)
    assert disc.item() == pytest.approx(discrepancy_term(h(real_out), real_part, h(syn_out), syn_part, distance, **same).item(),
                                        rel=1e-5)
    assert rob.item() == pytest.approx(robustness_term(h(syn_out), syn_part, real_part, distance, **same).item(), rel=1e-5)
    assert disc.item() > 0 and rob.item() > 0


def test_the_gradient_flows_through_the_batch_rows_as_through_the_full_formula():
    real_out, real_part, syn_out, syn_part = _samples(1)
    memory = _stored(real_out, real_part, syn_out, syn_part)
    idx, sidx = torch.tensor([0, 5]), torch.tensor([6, 7, 12])
    live_real = real_out[idx].clone().requires_grad_(True)
    live_syn = syn_out[sidx].clone().requires_grad_(True)
    disc, rob = all_data_terms(memory, (idx, live_real, real_part[idx]), (sidx, live_syn, syn_part[sidx]))
    (disc + rob).backward()

    full_real, full_syn = real_out.clone().requires_grad_(True), syn_out.clone().requires_grad_(True)
    hr, hs = full_real.softmax(-1), full_syn.softmax(-1)
    (discrepancy_term(hr, real_part, hs, syn_part) + robustness_term(hs, syn_part, real_part)).backward()
    torch.testing.assert_close(live_real.grad, full_real.grad[idx], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(live_syn.grad, full_syn.grad[sidx], rtol=1e-4, atol=1e-6)


def test_samples_no_batch_has_drawn_are_left_out():
    real_out, real_part, syn_out, syn_part = _samples(2)
    seen_real, seen_syn = torch.tensor([0, 2, 4, 6]), torch.arange(4, 20)
    memory = _stored(real_out, real_part, syn_out, syn_part, seen_real, seen_syn)
    assert (memory.seen("real"), memory.seen("syn")) == (4, 16)
    idx, sidx = torch.tensor([0]), torch.tensor([10, 10, 11])  # a sample drawn twice enters once
    disc, rob = all_data_terms(memory, (idx, real_out[idx], real_part[idx]), (sidx, syn_out[sidx], syn_part[sidx]))
    hr, hs = real_out[seen_real].softmax(-1), syn_out[seen_syn].softmax(-1)
    assert disc.item() == pytest.approx(discrepancy_term(hr, real_part[seen_real], hs, syn_part[seen_syn]).item(), rel=1e-5)
    assert rob.item() == pytest.approx(robustness_term(hs, syn_part[seen_syn], real_part[seen_real]).item(), rel=1e-5)


@pytest.mark.parametrize("method, scope, over_all", [
    ("online", "batch", False), ("static", "batch", False), ("static", "all", True), ("online", "all", True),
])
def test_partition_scope_resolves_and_the_loop_keeps_a_memory_only_over_all_data(method, scope, over_all):
    partition = PartitionConfig(method=method, scope=scope)
    assert partition.over_all_data == over_all
    objectives = parse_loss({"bound": {}})
    data = _data(with_partitions=method == "static")
    if method == "online":
        data.real_vectors, data.syn_vectors = data.real_images.flatten(1), data.syn_images.flatten(1)
        data.num_partitions = 3
    states = []
    config = TrainConfig(epochs=1, steps_per_epoch=3, batch_real=6, batch_syn=6, lr=1e-2)
    last = train_few_shot(
        _model(objectives), data, config, objectives=objectives, partition=partition, on_epoch_end=lambda m, s: states.append(s)
    ).metrics
    memory = states[-1]["runs"][0]["memory"]
    assert (memory is not None) == over_all
    if over_all:  # every drawn sample's latest output and region are kept
        assert 0 < int((memory["part"]["syn"] >= 0).sum()) <= 3 * 6
        assert last.terms["discrepancy"] > 0

