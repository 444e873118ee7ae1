"""Every registered objective on the same tiny model (table-driven), the two-stage
protocol, and the loss section's validation."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from raysynth.config import ConfigError, TrainConfig
from raysynth.losses import OBJECTIVES, PrototypeHead, parse_loss
from raysynth.models.classifier import FewShotClassifier
from raysynth.train.evaluate import model_accuracy
from raysynth.train.loop import TrainData, train_few_shot
from raysynth.train.session import training_protocol
from raysynth.validate import load_config

REPO_SPACE = __import__("pathlib").Path(__file__).resolve().parents[2] / "search_spaces" / "digits.yaml"


def _blobs(n, g, classes=3):
    labels = torch.arange(n) % classes
    images = torch.rand(n, 3, 8, 8, generator=g) * 0.2
    for c in range(classes):
        images[labels == c, c, :, :] += 0.8  # class c: bright channel c
    return images, labels


def _data(with_partitions=True):
    g = torch.Generator().manual_seed(0)
    x, y = _blobs(12, g)
    vx, vy = _blobs(60, g)
    sx, sy = _blobs(24, g)
    data = TrainData(x, y, vx, vy, 3, sx, torch.nn.functional.one_hot(sy, 3).float(), sy)
    if with_partitions:
        data.real_part, data.syn_part = y.clone(), sy.clone()  # one region per class
    return data


def _model(objectives, seed=0):
    torch.manual_seed(seed)
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 16), nn.ReLU(), nn.Linear(16, 16))
    head = None
    for o in objectives:
        if o.head == "prototype":
            head = PrototypeHead(3, 16, o.params.prototypes, o.params.temperature)
    projection = 8 if any(o.needs_projection for o in objectives) else None
    return FewShotClassifier(encoder, 16, 3, head=head, projection_dim=projection)


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_every_objective_trains_the_tiny_model_and_logs_its_terms(name):
    objectives = parse_loss({name: {}})
    model = _model(objectives)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    config = TrainConfig(epochs=2, steps_per_epoch=4, batch_real=6, batch_syn=6, lr=1e-2)
    protocol = "two_stage" if all(o.representation for o in objectives) else "joint"
    data = _data()
    result = train_few_shot(model, data, config, objectives=objectives, protocol=protocol)
    last = result.metrics
    # the reported accuracy is the trained classifier's on the validation split, recomputed here
    assert last.epoch == 2 and last.val_acc == pytest.approx(model_accuracy([model], data.val_images, data.val_labels, result.probes))
    assert last.terms and all(torch.isfinite(torch.tensor(v)) for v in last.terms.values())
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("encoder") for k in changed), f"{name}: no gradient reached the encoder"


def test_terms_of_combined_objectives_are_logged_separately():
    objectives = parse_loss({"bound": {"lam1": 0.5, "lam2_ratio": 10}, "unicon": {"weight": 0.2}})
    config = TrainConfig(epochs=1, steps_per_epoch=3, batch_real=6, batch_syn=6, lr=1e-2)
    last = train_few_shot(_model(objectives), _data(), config, objectives=objectives).metrics
    assert {"ce_real", "ce_syn", "discrepancy", "robustness", "contrastive"} <= set(last.terms)
    assert last.loss == pytest.approx(sum(last.terms.values()), rel=1e-5)
    assert objectives[0].params.effective_lam2 == 5.0


def test_online_partitions_follow_the_batches():
    objectives = parse_loss({"bound": {}})
    data = _data(with_partitions=False)
    data.real_vectors, data.syn_vectors = data.real_images.flatten(1), data.syn_images.flatten(1)
    data.num_partitions = 3
    states = []
    config = TrainConfig(epochs=1, steps_per_epoch=3, batch_real=6, batch_syn=6, lr=1e-2)
    last = train_few_shot(_model(objectives), data, config, objectives=objectives, on_epoch_end=lambda m, s: states.append(s)).metrics
    assert "discrepancy" in last.terms
    assert states[-1]["online_kmeans"]["counts"].sum().item() == 3 * 6  # every synthetic image seen once


def _trained_encoder(loss: dict, weights: torch.Tensor, data: TrainData) -> dict:
    objectives = parse_loss(loss)
    model = _model(objectives)
    config = TrainConfig(epochs=1, steps_per_epoch=3, batch_real=6, batch_syn=6, lr=1e-2)
    protocol = "two_stage" if all(o.representation for o in objectives) else "joint"
    train_few_shot(model, data, config, class_weights=weights, objectives=objectives, protocol=protocol)
    return {k: v for k, v in model.state_dict().items() if k.startswith("encoder")}


@pytest.mark.parametrize("loss, synthetic_matters", [
    ({"unicon": {}}, True),  # UniCon: w_c = 0 drops the pull, the rows stay as negatives
    ({"supcon": {"synthetic": "mixed"}}, True),  # SupCon-Mixed does not weight classes
    ({"ce": {}}, False),  # a class-weighted objective: nothing left at w = 0
])
def test_zero_weights_keep_synthetic_rows_only_where_an_objective_uses_them(loss, synthetic_matters):
    """Every w_c = 0: UniCon still trains against the synthetic images (negatives in its
    denominators), where the loop once dropped the synthetic batch; a class-weighted
    objective trains exactly as on the real images alone."""
    with_pool, real_only = _data(), _data()
    real_only.syn_images = real_only.syn_soft_labels = real_only.syn_class = None
    a = _trained_encoder(loss, torch.zeros(3), with_pool)
    b = _trained_encoder(loss, torch.zeros(3), real_only)
    same = all(torch.equal(a[k], b[k]) for k in a)
    assert same != synthetic_matters


def test_two_stage_protocol_averages_n_contr_by_n_classif_classifiers():
    objectives = parse_loss({"unicon": {}})
    models = [_model(objectives, seed=i) for i in range(2)]
    config = TrainConfig(epochs=2, steps_per_epoch=4, batch_real=6, batch_syn=6, lr=1e-2, n_contr=2, n_classif=3, probe_steps=30)
    seen = []
    data = _data()
    result = train_few_shot(models, data, config, objectives=objectives, protocol="two_stage", on_epoch_end=lambda m, s: seen.append((m, s)))
    last = result.metrics
    assert [m.epoch for m, _ in seen] == [1, 2]
    assert seen[0][0].val_acc_std is None and last.val_acc_std is not None  # the spread exists after the classifiers
    assert [len(r["probes"]) for r in seen[-1][1]["runs"]] == [3, 3] and [len(p) for p in result.probes] == [3, 3]
    # the classifiers come back in the result: scoring them again gives the reported value
    assert model_accuracy(models, data.val_images, data.val_labels, result.probes) == pytest.approx(last.val_acc)
    assert not any(hasattr(m, "probes") for m in models)
    assert not torch.equal(models[0].projection[0].weight, models[1].projection[0].weight)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["loss={bogus: {}}"], "loss.bogus: unknown objective"),
        (["loss={bound: {}}", "search.space.loss.ce.synthetic={type: uniform, low: 1, high: 2}"],
         "search.space.loss.ce.synthetic: objective 'ce' is not selected"),
        (["loss={bound: {lam1: -1}}"], "loss.bound.lam1: must be >= 0"),
        (["loss={bound: {lam3: 1}}"], "unknown config field 'loss.bound.lam3'"),
        (["loss={bound: {output: probs}}"], "loss.bound.output: must be 'softmax' or 'logits', got 'probs'"),
        (["loss.ce.label_smoothing=1.0"], "loss.ce.label_smoothing: must be in"),
        (["loss={unicon: {}}", "search.space={}", "train.mix=cutmix"], "train.mix: CutMix/Mixup give soft labels; objective 'unicon' needs hard ones"),
        (["loss={bound: {label_smoothing: -0.1}}"], "loss.bound.label_smoothing: must be in"),
        (["loss={supcon: {synthetic: fake}}"], "loss.supcon.synthetic"),
        (["train.protocol=two_stage"], "train.protocol: 'two_stage' needs a representation objective"),
        (["partition.clusters_per_class=0"], "partition.clusters_per_class: must be > 0"),
        (["partition.space=latent"], "partition.space"),
        (["search.space.loss.bound.lam1={type: uniform, low: 0.1, high: 1}"], "objective 'bound' is not selected"),
        (["loss={bound: {}}", "search.space={}", "search.space.loss.bound.beta={type: uniform, low: 0.1, high: 1}"], "unknown parameter 'beta'"),
    ],
)
def test_bad_loss_configs_name_the_field(overrides, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")) as info:
        load_config(REPO_SPACE, overrides)
    assert "\n" not in str(info.value)


def test_protocol_auto_follows_the_objectives():
    def protocol(loss):
        config = load_config(REPO_SPACE, [f"loss={loss}", "search.space={}"])
        return training_protocol(config, parse_loss(config.loss))

    assert protocol("{unicon: {}}") == "two_stage"
    assert protocol("{unicon: {}, ce: {}}") == "joint"
    assert protocol("{bound: {}}") == "joint"


def test_each_epoch_of_a_pass_draws_every_real_and_synthetic_image_once(monkeypatch):
    """No silent data loss: with the bound loss (regions, per-class weights), an epoch of
    N / batch steps draws each of the 12 real shots and the 24 synthetic images exactly
    once (a pass, as the papers' shuffled loaders), the next epoch all of them again."""
    from raysynth.config import PartitionConfig
    from raysynth.train import draws

    drawn = {"real": [], "syn": []}
    take = draws.EpochDraws.take
    monkeypatch.setattr(draws.EpochDraws, "take", lambda self, *a: drawn[self.kind].append(out := take(self, *a)) or out)
    objectives = parse_loss({"bound": {}})
    config = TrainConfig(epochs=2, steps_per_epoch=4, batch_real=3, batch_syn=6, lr=1e-2)
    train_few_shot(_model(objectives), _data(), config, objectives=objectives, partition=PartitionConfig(),
                   class_weights=torch.tensor([1.0, 0.5, 0.0]))
    for kind, n in (("real", 12), ("syn", 24)):
        steps = torch.stack(drawn[kind])  # (8 steps x batch)
        for epoch in (steps[:4], steps[4:]):
            assert sorted(epoch.flatten().tolist()) == list(range(n)), kind
        assert not torch.equal(steps[:4], steps[4:])  # each pass its own order


def test_a_steps_draws_depend_only_on_the_seed_and_the_step():
    """What makes an epoch-checkpoint resume draw what an uninterrupted run draws."""
    from raysynth.train.draws import EpochDraws

    walked = EpochDraws(10, seed=3, kind="syn")
    sequence = [walked.take(step, 4) for step in range(7)]  # 28 draws: passes 0, 1, 2 and part of 3
    fresh = [EpochDraws(10, seed=3, kind="syn").take(step, 4) for step in range(7)]
    assert all(torch.equal(a, b) for a, b in zip(sequence, fresh))
    flat = torch.cat(sequence).tolist()
    assert all(sorted(flat[k * 10:(k + 1) * 10]) == list(range(10)) for k in range(2))
    assert not torch.equal(EpochDraws(10, seed=4, kind="syn").take(0, 10), sequence[0].new_tensor(flat[:10]))
    assert not torch.equal(EpochDraws(10, seed=3, kind="real").take(0, 10), sequence[0].new_tensor(flat[:10]))


@pytest.mark.parametrize("loss", [{"ce": {"label_smoothing": 0.1}}, {"bound": {"label_smoothing": 0.1, "lam": 1.0, "lam1": 0.0, "lam2": 0.0}}])
def test_label_smoothing_moves_both_cross_entropies_toward_uniform_targets(loss):
    """Diff-Mix's ε = 0.1: real targets (1 − ε)·onehot + ε/C, synthetic soft labels the same."""
    from raysynth.losses.base import LossBatch

    g = torch.Generator().manual_seed(0)
    logits_real, logits_syn = torch.randn(4, 3, generator=g), torch.randn(5, 3, generator=g)
    y_real, syn_class = torch.tensor([0, 1, 2, 0]), torch.tensor([0, 1, 2, 1, 0])
    soft = torch.softmax(torch.randn(5, 3, generator=g), -1)
    batch = LossBatch(logits_real=logits_real, y_real=y_real, class_weights=torch.ones(3), logits_syn=logits_syn,
                      soft_syn=soft, syn_class=syn_class, part_real=torch.zeros(4, dtype=torch.long), part_syn=torch.zeros(5, dtype=torch.long),
                      pool_images=5)
    (objective,) = parse_loss(loss)
    terms = objective.terms(batch)
    smoothed_real = torch.nn.functional.one_hot(y_real, 3) * 0.9 + 0.1 / 3
    expected_real = -(smoothed_real * logits_real.log_softmax(-1)).sum(-1).mean()
    expected_syn = -((soft * 0.9 + 0.1 / 3) * logits_syn.log_softmax(-1)).sum(-1).mean()
    assert terms["ce_real"].item() == pytest.approx(expected_real.item(), rel=1e-5)
    assert terms["ce_syn"].item() == pytest.approx(expected_syn.item(), rel=1e-5)


def _ce_batch(weights):
    from raysynth.losses import LossBatch

    g = torch.Generator().manual_seed(3)
    syn_class = torch.arange(12) % 3
    return LossBatch(
        logits_real=torch.randn(6, 3, generator=g), y_real=torch.arange(6) % 3, class_weights=torch.tensor(weights),
        logits_syn=torch.randn(12, 3, generator=g), soft_syn=F.one_hot(syn_class, 3).float(), syn_class=syn_class,
    )


def test_balanced_ce_changes_nothing_when_every_class_is_trusted_alike():
    plain, balanced = parse_loss({"ce": {}})[0], parse_loss({"ce": {"balance": True}})[0]
    batch = _ce_batch([0.7, 0.7, 0.7])
    for name, value in plain.terms(batch).items():
        assert balanced.terms(batch)[name].item() == pytest.approx(value.item(), rel=1e-6)


def test_balanced_ce_trains_toward_a_balanced_prior_when_a_class_is_distrusted():
    """Class 2's synthetic data at weight 0: the loss mass is 2:2:1 for the real +
    synthetic rows; the balanced loss trains logits + log(prior), so its optimum raises
    class 2's raw logit where the plain loss leaves it under-predicted."""
    from raysynth.losses.ce import training_prior

    prior = training_prior(torch.tensor([1.0, 1.0, 0.0]), 1.0, 1.0)
    torch.testing.assert_close(prior, torch.tensor([2.0, 2.0, 1.0]) / 5)
    # the loss's own mass: with every logit 0, the gradient of each class's offset is
    # (its share of the targets' mass) - 1/C, times the total mass (here 1 + 2/3)
    batch = _ce_batch([1.0, 1.0, 0.0])
    batch.logits_real, batch.logits_syn = torch.zeros(6, 3), torch.zeros(12, 3)
    bias = torch.zeros(3, requires_grad=True)
    batch.logits_real, batch.logits_syn = batch.logits_real + bias, batch.logits_syn + bias
    sum(parse_loss({"ce": {}})[0].terms(batch).values()).backward()
    total = 1.0 + 2.0 / 3.0  # the real mean, and the synthetic mean over 12 rows of which 8 count
    torch.testing.assert_close(1 / 3 - bias.grad / total, prior)
    batch = _ce_batch([1.0, 1.0, 0.0])
    plain, balanced = parse_loss({"ce": {}})[0], parse_loss({"ce": {"balance": True}})[0]
    bias_grads = []
    for objective in (plain, balanced):
        bias = torch.zeros(3, requires_grad=True)  # a shared logit offset: what the class prior moves
        shifted = _ce_batch([1.0, 1.0, 0.0])
        shifted.logits_real, shifted.logits_syn = batch.logits_real + bias, batch.logits_syn + bias
        sum(objective.terms(shifted).values()).backward()
        bias_grads.append(bias.grad.clone())
    # descending the gradient: the plain loss pushes class 2's offset down more than the balanced one
    assert -bias_grads[1][2] > -bias_grads[0][2]
