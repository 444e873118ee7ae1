"""`raysynth reproduce NAME`: a paper's protocol, its published numbers beside the run's.
unicon-mnist runs end to end here (scaled down further for the suite); the real-data
tables run on a miniature Flowers102 tree with a tiny model, down to the printed table."""

import pytest
import re

import torch
from conftest import make_flowers_coop

from raysynth.cli import main
from raysynth.reproduce import PROTOCOLS

FAST = ["model.pretrain.steps=30", "pool.per_class=12", "train.epochs=2", "train.steps_per_epoch=3",
        "train.batch_real=8", "train.batch_syn=8", "train.threads=1"]


def _rows(out: str) -> dict[str, tuple[str, str, str]]:
    """The printed table: row label -> (published, this run, difference)."""
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 4 and cells[0] not in ("row",):
            rows[cells[0]] = (cells[1], cells[2], cells[3])
    return rows


@pytest.mark.story
def test_unicon_mnist_runs_end_to_end_and_prints_the_papers_numbers_beside_its_own(ray_session, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RAYSYNTH_HOME", str(tmp_path / "home"))
    sets = [a for kv in [*FAST, "search.trials=3", "search.initial_points=2", "search.concurrency=1",
                         "train.n_classif=1", "train.probe_steps=20"] for a in ("--set", kv)]
    assert main(["reproduce", "unicon-mnist", "--seeds", "1", *sets]) == 0
    out = capsys.readouterr().out
    rows = _rows(out)
    protocol = PROTOCOLS["unicon-mnist"]
    assert list(rows) == [r.label for r in protocol.rows]
    assert rows["SupCon-Real"][0] == "88.45" and rows["UniCon, learned (best trial)"][0] == "90.36"
    assert rows["UniCon, oracle weights"][0] == "—"
    for label, (published, ours, diff) in rows.items():
        accuracy = float(re.match(r"([\d.]+) ± [\d.]+ \(1 seed\)", ours).group(1))
        assert 0.0 <= accuracy <= 100.0
        if published != "—":  # the difference is the run's minus the paper's
            assert float(diff) == round(accuracy - float(published), 2) or abs(float(diff) - (accuracy - float(published))) < 0.011
    assert re.search(r"learned weights \(best trial\): five [\d.]+, six", out)
    assert "differences that remain:" in out and "2 real shots per class, not 16" in out


def _tiny_checkpoint(path):
    from raysynth.models.backbone import create_model

    torch.manual_seed(0)
    torch.save(create_model("raysynth-tiny").state_dict(), path)
    return path


def _flowers_sets(tmp_path) -> list[str]:
    """A miniature Flowers102 tree in CoOp's split format, a tiny checkpoint, and the
    overrides that make a real-data table run on them in seconds per row."""
    root = make_flowers_coop(tmp_path / "flowers102", classes=3, per_split=(4, 2, 2))
    ckpt = _tiny_checkpoint(tmp_path / "tiny.pt")
    sets = [
        "data.image_size=32", "data.shots=2", "data.val_per_class=1",
        "model.name=raysynth-tiny", f"model.pretrained={ckpt}", "model.lora.dropout=0.0",
        "pool.generator=morph", "pool.options={}", "pool.mode=mix", "pool.per_class=4", "pool.actors=1",
        "pool.clip_model=null", "pool.clip_pretrained=null", "train.epochs=1", "train.steps_per_epoch=2",
        "train.batch_real=4", "train.batch_syn=4", "train.threads=1", "partition.niter=10",
        *[f"resources.{kind}={{}}" for kind in ("trial", "generation", "final", "finetune", "prepare")],
    ]
    return ["--seeds", "1", "--data-root", str(root), *[a for kv in sets for a in ("--set", kv)]]


def test_the_real_data_tables_on_a_miniature_flowers_tree(ray_session, tmp_path, monkeypatch, capsys):
    """icml25-flowers-16shot (flowers.yaml, the bound loss) on CoOp's split format, tiny
    model and generator: every row trains and the table prints the paper's numbers
    (98.7 / 99.3) beside the run's."""
    monkeypatch.setenv("RAYSYNTH_HOME", str(tmp_path / "home"))
    assert main(["reproduce", "icml25-flowers-16shot", *_flowers_sets(tmp_path)]) == 0
    out = capsys.readouterr().out
    rows = _rows(out)
    assert list(rows) == ["Real-finetune", "Ours (full): bound loss"]
    assert rows["Real-finetune"][0] == "98.70" and rows["Ours (full): bound loss"][0] == "99.30"
    assert all(re.match(r"[\d.]+ ± [\d.]+ \(1 seed\)", ours) for _, ours, _ in rows.values())
    assert "differences that remain:" in out


@pytest.mark.story
def test_datadreams_table_on_a_miniature_flowers_tree(ray_session, tmp_path, monkeypatch, capsys):
    """datadream-flowers-16shot on the same kind of tree: the paper's 98.7 / 99.4 beside
    the run's (the table's machinery is the icml25 test's; this is DataDream's rows)."""
    monkeypatch.setenv("RAYSYNTH_HOME", str(tmp_path / "home"))
    assert main(["reproduce", "datadream-flowers-16shot", *_flowers_sets(tmp_path)]) == 0
    out = capsys.readouterr().out
    rows = _rows(out)
    assert list(rows) == ["Real-finetune", "DataDream (dataset-level LoRA)"] and rows["DataDream (dataset-level LoRA)"][0] == "99.40"
    assert all(re.match(r"[\d.]+ ± [\d.]+ \(1 seed\)", ours) for _, ours, _ in rows.values())
    assert "differences that remain:" in out and "SD 2.1" in out


def test_reproduce_refuses_bad_input_with_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RAYSYNTH_HOME", str(tmp_path / "home"))
    for args, needle in (
        (["reproduce", "resnet-imagenet"], "reproduce: unknown table 'resnet-imagenet' (known: datadream-flowers-16shot"),
        (["reproduce", "diffmix-cub-5shot"], "reproduce diffmix-cub-5shot: needs --data-root"),
        (["reproduce", "unicon-mnist", "--seeds", "0"], "--seeds: must be >= 1, got 0"),
        (["reproduce", "unicon-mnist", "--set", "train.lr=-1"], "train.lr"),
    ):
        assert main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "home" / "mlflow.db").exists()
    assert main(["reproduce", "--list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in PROTOCOLS) and "59.41" in listed


def test_every_real_data_table_is_a_valid_config_on_its_miniature_tree(tmp_path):
    """Each real-data protocol's rows load and check on a miniature tree of their dataset
    (the full run, down to the table, is the flowers test above)."""
    from conftest import REPO, make_cub

    from raysynth.data import DATASETS
    from raysynth.reproduce import protocol_config

    roots = {"cub.yaml": make_cub(tmp_path / "cub", train_per_class=8, test_per_class=1),
             "flowers.yaml": make_flowers_coop(tmp_path / "flowers", per_split=(17, 2, 1))}
    for name, p in PROTOCOLS.items():
        if not p.needs_data:
            continue
        base = protocol_config(p, REPO / "search_spaces", [f"data.root={roots[p.space]}", "pool.generator=morph", "pool.options={}"])
        assert base.search.space == {}  # the papers' fixed settings: nothing searched
        for row in p.rows:
            # (a tiny generator: the papers' Stable Diffusion weights are not on this machine)
            config = protocol_config(p, REPO / "search_spaces", [f"data.root={roots[p.space]}", "pool.generator=morph", "pool.options={}"], row, 3)
            DATASETS[config.dataset].check(config.data)
            assert config.search.space == {} and config.search.final_seeds == 3
            if name == "diffmix-cub-5shot":
                assert config.data.shots == 5 and config.pool.per_class == 25
            if name.startswith("datadream"):
                assert config.pool.mode == "gen" and config.loss == ({"ce": {"real": 0.8, "synthetic": 0.2}} if row.use_synthetic else config.loss)
            if not row.use_synthetic:
                assert "bound" not in config.loss
