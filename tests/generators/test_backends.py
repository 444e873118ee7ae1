"""The diffusion backends on tiny random models built from configs (no downloads)."""

import re

import numpy as np
import pandas as pd
import pytest
import torch

from raysynth.config import ConfigError, PoolConfig
from raysynth.data.base import ImageSet
from raysynth.generators import create_generator
from raysynth.generators.filtering import ClipScorer, scores_from_logits
from raysynth.pool.filters import keep_mask
from raysynth.validate import load_config

CLASSES = ["black footed albatross", "laysan albatross", "sooty albatross"]
TINY_DDPM = {"channels": [8, 16], "train_steps": 3, "batch_size": 8, "inference_steps": 6}


def _shots(k=2, size=32):
    g = torch.Generator().manual_seed(0)
    return ImageSet(torch.rand(3 * k, 3, size, size, generator=g), torch.arange(3).repeat_interleave(k))


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory):
    from raysynth.testing.tiny_sd import build_tiny_stable_diffusion

    return build_tiny_stable_diffusion(tmp_path_factory.mktemp("tiny_sd") / "pipeline")


def _sd(tiny_sd, **options):
    config = PoolConfig(
        generator="stable_diffusion",
        options={"model": str(tiny_sd), "resolution": 64, "steps": 4, "scheduler": "ddim", "batch_size": 2, **options},
    )
    gen = create_generator(config, CLASSES, "bird")
    gen.fit(None)
    return gen


# ------------------------------------------------------------------------------ ddpm


def test_ddpm_save_load_roundtrip_and_strength_zero(tmp_path):
    shots = _shots()
    gen = create_generator(PoolConfig(generator="ddpm", options=TINY_DDPM), CLASSES)
    gen.fit(shots)
    refs, targets, seeds = shots.images[:4], torch.tensor([1, 2, 0, 1]), torch.tensor([5, 6, 7, 8])
    out, labels = gen.translate(refs, targets, 0.8, seeds)
    assert out.shape == refs.shape and torch.equal(labels, targets)
    gen.save(tmp_path / "fitted")
    loaded = create_generator(PoolConfig(generator="ddpm", options=TINY_DDPM), CLASSES)
    loaded.load(tmp_path / "fitted")
    assert torch.equal(loaded.translate(refs, targets, 0.8, seeds)[0], out)
    # s = 0: no denoising step, the reference itself; Diff-Gen: from noise, any size
    assert torch.equal(gen.translate(refs, targets, 0.0, seeds)[0], refs)
    gen_images, gen_labels = gen.generate(targets, seeds, size=24)
    assert gen_images.shape == (4, 3, 24, 24) and torch.equal(gen_labels, targets)
    # one image alone or in a batch: its own seed decides it
    alone, _ = gen.translate(refs[2:3], targets[2:3], 0.8, seeds[2:3])
    assert torch.allclose(alone, out[2:3], atol=1e-5)


def test_ddpm_rejects_bad_options():
    with pytest.raises(ConfigError, match="pool.options.resolution"):
        create_generator(PoolConfig(generator="ddpm", options={"resolution": 7}), CLASSES)
    with pytest.raises(ConfigError, match="pool.options.inference_steps"):
        load_config(None, ["pool.generator=ddpm", "pool.options.inference_steps=0"])
    with pytest.raises(ConfigError, match="unknown config field 'pool.options.steps'"):
        load_config(None, ["pool.generator=ddpm", "pool.options.steps=3"])


@pytest.mark.parametrize("option, message", [
    ("scheduler=heun", "pool.options.scheduler: must be 'ddim', 'dpm++', 'euler' or 'pndm', got 'heun'"),
    ("dtype=float64", "pool.options.dtype: must be 'auto', 'float32', 'float16' or 'bfloat16', got 'float64'"),
    ("steps=0", "pool.options.steps: must be >= 1, got 0"),
])
def test_stable_diffusion_options_fail_when_the_config_loads(tiny_sd, option, message):
    """Checked by the options parser at load time, never first inside a Ray Data actor."""
    overrides = ["pool.generator=stable_diffusion", f"pool.options.model={tiny_sd}", f"pool.options.{option}"]
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(None, overrides)


# ------------------------------------------------------------------ stable diffusion


def test_tiny_tokenizer_matches_open_clip(tiny_sd):
    import open_clip
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(tiny_sd, subfolder="tokenizer")
    text = "photo of a black footed albatross bird"
    ids = tok(text).input_ids  # unpadded (CLIPTokenizer pads with <|endoftext|>, open_clip with 0)
    assert len(ids) == 10 and ids == open_clip.tokenize([text])[0].tolist()[: len(ids)]


def test_sd_img2img_and_txt2img(tiny_sd):
    gen = _sd(tiny_sd)
    refs = _shots().images[:3]
    targets, seeds = torch.tensor([2, 0, 1]), torch.tensor([10, 11, 12])
    out, labels = gen.translate(refs, targets, 0.7, seeds)
    assert out.shape == refs.shape and torch.equal(labels, targets)
    assert 0 <= out.min() and out.max() <= 1
    assert torch.equal(gen.translate(refs, targets, 0.7, seeds)[0], out)  # deterministic
    assert not torch.equal(gen.translate(refs, targets, 0.7, seeds + 1)[0], out)
    # batch size 2: rows 0-1 then row 2; row 2 alone gives the same image (its own generator)
    alone, _ = gen.translate(refs[2:], targets[2:], 0.7, seeds[2:])
    assert torch.allclose(alone, out[2:], atol=1e-4)
    assert torch.equal(gen.translate(refs, targets, 0.0, seeds)[0], refs)  # s = 0: the reference
    images, labels = gen.generate(targets, seeds, size=48)
    assert images.shape == (3, 3, 48, 48) and torch.equal(labels, targets)
    assert gen.prompt(0) == "photo of a black footed albatross bird"


def test_sd_missing_model_is_a_config_error(tmp_path, monkeypatch):
    from raysynth.generators.backends.stable_diffusion import check_model_available

    with pytest.raises(ConfigError, match="not a diffusers pipeline directory"):
        check_model_available(str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ConfigError, match="HF_HUB_OFFLINE"):
        check_model_available("stable-diffusion-v1-5/stable-diffusion-v1-5")


@pytest.mark.story
def test_finetuned_lora_and_tokens_load_and_change_the_output(ray_session, tiny_sd, tmp_path):
    """DataDream's class-level variant: one LoRA and one token per class, trained by Ray
    Train, saved as safetensors, loaded by the backend; then a re-run resumes from the
    finished checkpoints instead of training again."""
    from raysynth.generators.finetune import FinetuneOptions, finetune_generator

    classes = CLASSES[:2]
    images = (np.random.default_rng(0).random((4, 3, 32, 32)) * 255).astype(np.uint8)
    labels = np.array([0, 0, 1, 1])
    options = FinetuneOptions(
        model=str(tiny_sd), rank=4, steps=3, batch_size=2, resolution=64, checkpoint_every=2,
        lr_lora=1e-2, lr_token=1e-1, per_class=True,
    )
    out = finetune_generator(options, images, labels, classes, "bird", tmp_path / "ft", {"CPU": 1.0}, storage=tmp_path / "train")
    names = sorted(p.name for p in out.iterdir())
    assert names == ["learned_embeds.safetensors", "tokens.json", "unet_lora_0.safetensors", "unet_lora_1.safetensors"]
    refs, targets, seeds = torch.from_numpy(images).float() / 255, torch.tensor([1, 0, 1, 0]), torch.arange(4)

    def make(finetuned):
        config = PoolConfig(generator="stable_diffusion", options={
            "model": str(tiny_sd), "resolution": 64, "steps": 4, "scheduler": "ddim", "finetuned": finetuned})
        gen = create_generator(config, classes, "bird")
        gen.fit(None)
        return gen

    base, tuned = make(None), make(str(out))
    assert tuned.prompt(1) == "photo of a <raysynth-1> bird"
    a, _ = base.translate(refs, targets, 0.7, seeds)
    b, _ = tuned.translate(refs, targets, 0.7, seeds)
    assert (a - b).abs().mean() > 1e-3
    # the fine-tuned token embeddings are in the text encoder
    from safetensors.torch import load_file

    embeds = load_file(out / "learned_embeds.safetensors")
    tok = tuned.img2img.tokenizer
    table = tuned.img2img.text_encoder.get_input_embeddings().weight
    assert torch.allclose(table[tok.convert_tokens_to_ids("<raysynth-0>")], embeds["<raysynth-0>"])

    import json

    again = finetune_generator(options, images, labels, classes, "bird", tmp_path / "ft2", {"CPU": 1.0}, storage=tmp_path / "train")
    info = json.loads((again / "tokens.json").read_text())
    assert info["resumed_finished"] == [True, True]
    assert load_file(again / "learned_embeds.safetensors")["<raysynth-1>"].equal(embeds["<raysynth-1>"])
    with pytest.raises(ConfigError, match="other classes"):
        gen = create_generator(PoolConfig(generator="stable_diffusion", options={"model": str(tiny_sd), "finetuned": str(out)}), CLASSES, "bird")
        gen.fit(None)


# ------------------------------------------------------------------ CLIP filtering


def test_filter_rules_on_a_constructed_manifest():
    manifest = pd.DataFrame({
        "target_class": [0, 0, 0, 0, 0, 1, 1, 1, 1, 1],
        "clip_score": [0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.8, 0.6, 0.4, 0.05],
        "clip_pred": [0, 1, 0, 1, 0, 1, 1, 0, 1, 0],
    })
    assert keep_mask(manifest, "none").all()
    bottom = keep_mask(manifest, "bottom", 0.4)  # 2 of 5 per class
    assert np.flatnonzero(~bottom).tolist() == [1, 3, 5, 9]
    assert np.flatnonzero(~keep_mask(manifest, "mismatch")).tolist() == [1, 3, 7, 9]
    with pytest.raises(ConfigError, match="needs CLIP scores"):
        keep_mask(manifest.drop(columns=["clip_score"]), "bottom")


def test_scores_from_logits():
    logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 5.0]])
    s = scores_from_logits(logits, torch.tensor([0, 1]))
    assert s["clip_pred"].tolist() == [0, 2]
    assert s["clip_margin"].tolist() == pytest.approx([2.0, -3.0])
    assert s["clip_score"][0] == pytest.approx(logits[0].softmax(0)[0].item())


def test_clip_scorer_flags_the_images_it_assigns_elsewhere():
    """Constructed case through the real scorer: the class text embeddings are set to
    the features of three images, so CLIP assigns image i to class i; images labelled
    with another target are the ones 'mismatch' drops and score lowest."""
    scorer = ClipScorer("raysynth-tiny", None, ["a", "b", "c"], "digit")
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    x = (images - scorer.mean) / scorer.std
    with torch.no_grad():
        scorer.text = torch.nn.functional.normalize(scorer.model.encode_image(x), dim=-1)
    targets = torch.tensor([0, 2, 2])  # image 1 is labelled 2 but looks like class 1
    scores = scorer.score(images, targets)
    assert scores["clip_pred"].tolist() == [0, 1, 2]
    manifest = pd.DataFrame({"target_class": targets.numpy(), **scores})
    assert keep_mask(manifest, "mismatch").tolist() == [True, False, True]
    assert scores["clip_margin"][1] < 0 < scores["clip_margin"][0]
