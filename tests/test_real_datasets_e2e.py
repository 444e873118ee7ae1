"""`jobs/search.py --dataset cub` end to end on a miniature CUB tree with a tiny random
open_clip model (text tower included) and tiny synthetic pools; weights errors."""

import json
import sqlite3

import torch

from conftest import run_job
from conftest import make_cub


def _tiny_checkpoint(path):
    from raysynth.models.backbone import create_model

    torch.manual_seed(0)
    torch.save(create_model("raysynth-tiny").state_dict(), path)
    return path


def test_cub_search_end_to_end(tmp_path):
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
    ]
    result = run_job(args, env={"RAYSYNTH_HOME": str(home)}, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "best" in result.stdout.lower()
    # three strengths were searched: three pools, each scored by CLIP
    metas = [json.loads(p.read_text()) for p in (home / "pools").glob("*/meta.json")]
    assert sorted(m["strength"] for m in metas) == [0.5, 0.7, 0.9]
    assert all(m["dataset"] == "cub" and m["clip_model"] == "raysynth-tiny" for m in metas)
    with sqlite3.connect(home / "mlflow.db") as db:
        (experiment,) = db.execute("select name from experiments where name='cub'").fetchone()
        finished = db.execute(
            "select count(*) from tags t join runs r on r.run_uuid=t.run_uuid "
            "where t.key='raysynth.status' and t.value='finished'"
        ).fetchone()[0]
    assert experiment == "cub" and finished >= 1


def test_missing_weights_and_root_exit_2(tmp_path):
    root = make_cub(tmp_path / "cub", train_per_class=4, test_per_class=1)
    home = tmp_path / "home"
    env = {"RAYSYNTH_HOME": str(home), "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    # cub.yaml as shipped: Stable Diffusion and ViT-B-16/openai, neither in the offline cache
    result = run_job(["--dataset", "cub", "--data-root", str(root)], env=env, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "pool.options.model" in result.stderr and "HF_HUB_OFFLINE" in result.stderr
    morph = ["--set", "pool.generator=morph", "--set", "pool.options={}"]
    result = run_job(["--dataset", "cub", "--data-root", str(root), *morph], env=env, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "model.pretrained" in result.stderr and "HF_HUB_OFFLINE" in result.stderr
    missing = run_job(["--dataset", "cub", "--data-root", str(tmp_path / "nope")], env=env, timeout=120)
    assert missing.returncode == 2 and "not a directory" in missing.stderr and "download" in missing.stderr
    nofile = run_job(["--dataset", "cub", "--data-root", str(root), *morph, "--set", "model.pretrained=/nope/ViT.pt"], env=env, timeout=120)
    assert nofile.returncode == 2 and "checkpoint file /nope/ViT.pt not found" in nofile.stderr
    assert not (home / "mlflow.db").exists()


def test_zero_shot_head_is_the_text_embeddings():
    import open_clip
    import torch.nn.functional as F

    from raysynth.models.backbone import create_model
    from raysynth.models.classifier import zero_shot_head

    torch.manual_seed(0)
    clip = create_model("raysynth-tiny")
    classes = ["black footed albatross", "laysan albatross"]
    head = zero_shot_head(clip, "raysynth-tiny", classes, "bird")
    tokens = open_clip.get_tokenizer("raysynth-tiny")([f"a photo of a {c}, a type of bird." for c in classes])
    clip.eval()
    with torch.no_grad():
        text = F.normalize(clip.encode_text(tokens), dim=-1)
    assert torch.allclose(head.weight, text, atol=1e-6)
    feats = torch.randn(3, text.shape[1])
    assert torch.allclose(head(feats), head.logit_scale * F.normalize(feats, dim=-1) @ text.T, atol=1e-4)
