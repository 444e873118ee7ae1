"""`jobs/search.py --dataset cub` end to end on a miniature CUB tree with a tiny random
open_clip model (text tower included) and tiny synthetic pools; weights errors."""

import json
import pytest
import sqlite3

import torch
from conftest import make_cub, run_job

from raysynth.cli import main


def _tiny_checkpoint(path):
    from raysynth.models.backbone import create_model

    torch.manual_seed(0)
    torch.save(create_model("raysynth-tiny").state_dict(), path)
    return path


@pytest.mark.story
def test_cub_search_end_to_end(ray_session, tmp_path):
    root = make_cub(tmp_path / "CUB_200_2011", train_per_class=6, test_per_class=2)
    ckpt = _tiny_checkpoint(tmp_path / "tiny.pt")
    home = tmp_path / "home"
    args = [
        "--dataset", "cub", "--data-root", str(root), "--trials", "2", "--concurrency", "1", "--quiet",
        "--set", "model.name=raysynth-tiny", "--set", f"model.pretrained={ckpt}",
        "--set", "data.image_size=32", "--set", "data.shots=2", "--set", "data.val_per_class=2",
        "--set", "pool.generator=morph", "--set", "pool.options={}", "--set", "pool.per_class=4",
        "--set", "pool.actors=1", "--set", "pool.clip_model=raysynth-tiny", "--set", f"pool.clip_pretrained={ckpt}",
        "--set", "pool.filter=mismatch",
        "--set", "train.epochs=2", "--set", "train.steps_per_epoch=2", "--set", "train.batch_real=4",
        "--set", "train.batch_syn=4", "--set", "train.threads=1", "--set", "search.final_seeds=1",
        "--set", "search.scheduler.name=fifo", "--set", "search.algorithm=random", "--set", "search.final_eval=false",
        "--set", "search.space.class_weights={type: grouped, groups: 2, by: quality, low: 0.0, high: 1.0}",
        # cub.yaml asks for a GPU per unit of work; this machine has none: the default, `auto`
        *[a for kind in ("trial", "generation", "final", "finetune", "prepare") for a in ("--set", f"resources.{kind}={{}}")],
    ]
    # attached to the session's Ray, as a user names a running cluster
    env = {"RAYSYNTH_HOME": str(home), "RAY_ADDRESS": ray_session.get_runtime_context().gcs_address}
    result = run_job(args, env=env, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "best" in result.stdout.lower()
    # cub.yaml draws each image's strength from {0.5, 0.7, 0.9} (Diff-Mix): one pool, scored by CLIP
    metas = [json.loads(p.read_text()) for p in (home / "pools").glob("*/meta.json")]
    assert len(metas) == 1 and metas[0]["strengths"] == [0.5, 0.7, 0.9]
    assert metas[0]["dataset"] == "cub" and metas[0]["clip_model"] == "raysynth-tiny"
    with sqlite3.connect(home / "mlflow.db") as db:
        (experiment,) = db.execute("select name from experiments where name='cub'").fetchone()
        finished = db.execute(
            "select count(*) from tags t join runs r on r.run_uuid=t.run_uuid "
            "where t.key='raysynth.status' and t.value='finished'"
        ).fetchone()[0]
    assert experiment == "cub" and finished >= 1


def test_missing_weights_and_root_exit_2(tmp_path, monkeypatch, capsys):
    root = make_cub(tmp_path / "cub", train_per_class=4, test_per_class=1)
    home = tmp_path / "home"
    env = {"RAYSYNTH_HOME": str(home), "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    # cub.yaml as shipped: Stable Diffusion and ViT-B-16/openai, neither in the offline cache
    # (the hub's offline switch and cache are read when it is imported: a fresh process)
    result = run_job(["--dataset", "cub", "--data-root", str(root)], env=env, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "pool.options.model" in result.stderr and "HF_HUB_OFFLINE" in result.stderr
    morph = ["--set", "pool.generator=morph", "--set", "pool.options={}"]
    result = run_job(["--dataset", "cub", "--data-root", str(root), *morph], env=env, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "model.pretrained" in result.stderr and "HF_HUB_OFFLINE" in result.stderr
    # no hub involved: the command's entry point in this process
    monkeypatch.setenv("RAYSYNTH_HOME", str(home))
    assert main(["search", "--dataset", "cub", "--data-root", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "not a directory" in err and "download" in err
    assert main(["search", "--dataset", "cub", "--data-root", str(root), *morph, "--set", "model.pretrained=/nope/ViT.pt"]) == 2
    assert "checkpoint file /nope/ViT.pt not found" in capsys.readouterr().err
    assert not (home / "mlflow.db").exists()
