import pytest
import torch

from raysynth.config import TrainConfig
from raysynth.losses import soft_cross_entropy, weighted_synthetic_ce
from raysynth.train.evaluate import evaluate
from raysynth.train.loop import TrainData, train_few_shot


def test_zero_weight_removes_a_class_from_the_synthetic_loss():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 3, generator=g)
    soft = torch.softmax(torch.randn(6, 3, generator=g), -1)
    cls = torch.tensor([0, 0, 1, 1, 2, 2])
    w = torch.tensor([0.0, 1.0, 0.5])
    loss = weighted_synthetic_ce(logits, soft, cls, w)
    per = soft_cross_entropy(logits, soft)
    assert loss.item() == pytest.approx(((per[2:4].sum() + 0.5 * per[4:].sum()) / 6).item())
    # the gradient never reaches samples of a class with weight 0
    logits.requires_grad_(True)
    weighted_synthetic_ce(logits, soft, cls, w).backward()
    assert torch.all(logits.grad[:2] == 0) and torch.any(logits.grad[2:] != 0)


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2))

    def forward(self, x):
        return self.net(x)


def _blobs(n, g):
    labels = torch.arange(n) % 2
    images = torch.rand(n, 3, 8, 8, generator=g) * 0.2
    images[labels == 1, :, :4] += 0.8  # class 1: bright top half
    return images, labels


def test_loop_learns_and_reports_every_epoch():
    g = torch.Generator().manual_seed(0)
    x, y = _blobs(16, g)
    vx, vy = _blobs(64, g)
    sx, sy = _blobs(32, g)
    data = TrainData(x, y, vx, vy, 2, sx, torch.nn.functional.one_hot(sy, 2).float(), sy)
    torch.manual_seed(0)
    model = _Tiny()
    seen = []
    config = TrainConfig(epochs=3, steps_per_epoch=10, batch_real=8, batch_syn=8, lr=1e-2)
    last = train_few_shot(model, data, config, on_epoch_end=lambda m, state: seen.append((m, state["epoch"]))).metrics
    assert [m.epoch for m, _ in seen] == [1, 2, 3] and [e for _, e in seen] == [1, 2, 3]
    assert last.val_acc == evaluate(model, vx, vy)[0] > 0.9
    assert seen[-1][0].terms["ce_syn"] > 0 and seen[-1][0].as_dict()["loss_ce_real"] > 0


def test_loop_resumes_from_state():
    g = torch.Generator().manual_seed(1)
    x, y = _blobs(16, g)
    data = TrainData(x, y, x, y, 2)
    config = TrainConfig(epochs=4, steps_per_epoch=2, batch_real=4, lr=1e-2)
    states = []
    train_few_shot(_Tiny(), data, config, on_epoch_end=lambda m, s: states.append(s))
    epochs = []
    train_few_shot(_Tiny(), data, config, state=states[1], on_epoch_end=lambda m, s: epochs.append(m.epoch))
    assert epochs == [3, 4]


def test_nested_objective_is_the_mean_over_seeds_with_its_spread():
    """n_contr > 1 in the joint protocol: the same config trained with several seeds in
    lockstep; the reported value is the mean validation accuracy, the spread is logged."""
    g = torch.Generator().manual_seed(2)
    x, y = _blobs(16, g)
    vx, vy = _blobs(64, g)
    data = TrainData(x, y, vx, vy, 2)
    config = TrainConfig(epochs=2, steps_per_epoch=3, batch_real=4, lr=1e-2, n_contr=3)
    torch.manual_seed(0)
    models = [_Tiny() for _ in range(3)]
    last = train_few_shot(models, data, config).metrics
    accs = [evaluate(m, vx, vy)[0] for m in models]
    assert last.val_acc == pytest.approx(sum(accs) / 3)
    assert last.val_acc_std == pytest.approx(torch.tensor(accs).std().item())
    assert "val_acc_std" in last.as_dict()


def test_the_hue_jitter_is_torchvisions_adjust_hue():
    """DataDream's ColorJitter shifts hue (0.1); ours, batched per image, equals torchvision's."""
    from torchvision.transforms.v2 import functional as TF

    from raysynth.data.augment import shift_hue

    x = torch.rand(5, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    shifts = torch.tensor([0.1, -0.1, 0.05, 0.3, -0.45])
    expected = torch.stack([TF.adjust_hue(image, float(s)) for image, s in zip(x, shifts)])
    assert torch.allclose(shift_hue(x, shifts), expected, atol=1e-5)
    assert not torch.allclose(shift_hue(x, shifts), x, atol=1e-2)


def test_datadream_augmentation_is_per_image_reproducible_and_trains():
    """train.augment=datadream: every image of a batch gets its own crop, flip, jitter,
    blur...; the same generator seed gives the same batch; the loop trains with it."""
    from raysynth.data.augment import datadream_augment

    x = torch.rand(1, 3, 16, 16).expand(6, 3, 16, 16).contiguous()  # six copies of one image
    a = datadream_augment(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, datadream_augment(x, torch.Generator().manual_seed(3)))
    assert a.min() >= 0 and a.max() <= 1 and a.shape == x.shape
    assert len({tuple(img.flatten()[:20].tolist()) for img in a}) == 6  # no two copies alike
    # and the global torch RNG is left alone (RandAugment's own draws are seeded from the generator)
    state = torch.random.get_rng_state()
    datadream_augment(x, torch.Generator().manual_seed(4))
    assert torch.equal(state, torch.random.get_rng_state())

    g = torch.Generator().manual_seed(0)
    x, y = _blobs(16, g)
    vx, vy = _blobs(32, g)
    data = TrainData(x, y, vx, vy, 2)
    config = TrainConfig(epochs=2, steps_per_epoch=10, batch_real=8, lr=1e-2, augment="datadream")
    torch.manual_seed(0)
    model = _Tiny()
    before = [p.detach().clone() for p in model.parameters()]
    last = train_few_shot(model, data, config).metrics
    assert last.epoch == 2 and torch.isfinite(torch.tensor(last.loss))
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))


@pytest.mark.parametrize("kind", ["mixup", "cutmix"])
def test_mixed_targets_weigh_each_class_by_its_share_of_the_image(kind):
    """CutMix/Mixup (train.mix): the soft target of a mixed image gives each source class
    exactly the share of the image it contributed."""
    from raysynth.data.augment import mix_batch

    n, classes = 6, 6
    images = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, 16, 16) / 10  # image i: value i/10
    targets = torch.eye(classes)
    mixed, soft = mix_batch(kind, 1.0, images, targets, torch.Generator().manual_seed(1))
    assert torch.allclose(soft.sum(1), torch.ones(n))
    assert (soft.diagonal() < 1).sum() >= 2  # most images have a partner (seed 1)
    for i in range(n):
        own = soft[i, i].item()
        if own == 1.0:
            continue  # paired with itself
        (partner,) = [c for c in range(classes) if c != i and soft[i, c] > 0]
        if kind == "cutmix":  # the share of pixels taken from the partner
            assert (mixed[i] == partner / 10).float().mean().item() == pytest.approx(1 - own, abs=1e-6)
        else:
            assert torch.allclose(mixed[i], torch.full_like(mixed[i], (own * i + (1 - own) * partner) / 10))


def test_the_loop_trains_on_mixed_real_images():
    g = torch.Generator().manual_seed(0)
    x, y = _blobs(16, g)
    data = TrainData(x, y, x, y, 2)
    config = TrainConfig(epochs=1, steps_per_epoch=5, batch_real=8, lr=1e-2, mix="both")
    model = _Tiny()
    before = [p.detach().clone() for p in model.parameters()]
    last = train_few_shot(model, data, config).metrics
    assert torch.isfinite(torch.tensor(last.loss)) and any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))



def test_a_fraction_of_steps_mixes_real_and_synthetic_rows_each_among_themselves():
    """train.mix_p, as the official code: with p = 0.2 about a fifth of the steps are mixed,
    and a mixed step mixes the real rows among themselves and the synthetic rows among
    themselves (their soft targets too), never one with the other."""
    from raysynth.data.augment import mix_step

    g = torch.Generator().manual_seed(0)
    real, syn = torch.zeros(8, 3, 8, 8), torch.ones(8, 3, 8, 8)  # real black, synthetic white
    real_t = torch.nn.functional.one_hot(torch.arange(8) % 4, 8).float()
    syn_t = torch.nn.functional.one_hot(torch.arange(8) % 4 + 4, 8).float()  # classes 4..7
    mixed = 0
    for _ in range(1000):
        r, rt, s, st = mix_step("both", 1.0, 0.2, real, real_t, syn, syn_t, g)
        if rt is None:
            assert s is None and st is None and r is real
            continue
        mixed += 1
        assert torch.all(r == 0) and torch.all(s == 1)  # never real with synthetic
        assert torch.allclose(st.sum(1), torch.ones(8)) and torch.all(st[:, :4] == 0) and torch.all(rt[:, 4:] == 0)
    assert 150 <= mixed <= 250
    r, rt, s, st = mix_step("mixup", 1.0, 1.0, real, real_t, None, None, g)
    assert rt is not None and s is None  # train.mix_synthetic: false mixes the real rows only
    assert mix_step("none", 1.0, 1.0, real, real_t, syn, syn_t, g)[1] is None


def test_an_epoch_can_be_a_pass_over_the_pool():
    """train.steps_per_epoch: 'pass' is one pass over the synthetic pool (the papers' epoch)."""
    from raysynth.train.loop import epoch_steps

    g = torch.Generator().manual_seed(0)
    x, y = _blobs(10, g)
    sx, sy = _blobs(37, g)
    with_pool = TrainData(x, y, x, y, 2, sx, torch.nn.functional.one_hot(sy, 2).float(), sy)
    config = TrainConfig(epochs=2, steps_per_epoch="pass", batch_real=4, batch_syn=8, lr=1e-2)
    assert epoch_steps(config, with_pool) == 5  # ceil(37 / 8)
    assert epoch_steps(config, TrainData(x, y, x, y, 2)) == 3  # ceil(10 / 4): the real shots
    assert epoch_steps(TrainConfig(steps_per_epoch=7), with_pool) == 7
    drawn = []
    train_few_shot(_Tiny(), with_pool, config, on_epoch_end=lambda m, s: drawn.append(m.epoch))
    assert drawn == [1, 2]
