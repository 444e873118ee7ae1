"""A tiny, randomly initialised Stable Diffusion pipeline built from configs, offline.

Real Stable Diffusion weights cannot be downloaded here; this pipeline has the real
architecture (UNet2DConditionModel with cross-attention, AutoencoderKL, CLIP text
encoder, CLIP BPE tokenizer) at toy sizes, so the ``stable_diffusion`` backend and the
generator fine-tuning job run their real code paths in tests and benchmarks.

The tokenizer's vocabulary is rebuilt from the BPE merges that ship inside open_clip
(``bpe_simple_vocab_16e6.txt.gz``), exactly as open_clip's ``SimpleTokenizer`` and
transformers' ``CLIPTokenizer`` construct it: 256 byte symbols, the same with ``</w>``,
one token per merge, then the start/end tokens (49,408 ids).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import torch

VOCAB_SIZE = 49408


def _bytes_to_unicode() -> dict[int, str]:
    from open_clip.tokenizer import bytes_to_unicode

    return bytes_to_unicode()


def write_clip_tokenizer(directory: str | Path):
    """Write vocab.json and merges.txt for transformers' CLIPTokenizer; return the tokenizer."""
    from open_clip.tokenizer import default_bpe
    from transformers import CLIPTokenizer

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    lines = gzip.open(default_bpe()).read().decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1 : 49152 - 256 - 2 + 1]]
    vocab = list(_bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == VOCAB_SIZE, len(vocab)
    (directory / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    return CLIPTokenizer(
        str(directory / "vocab.json"), str(directory / "merges.txt"), pad_token="<|endoftext|>", model_max_length=77
    )


def build_tiny_stable_diffusion(directory: str | Path, seed: int = 0) -> Path:
    """Save a tiny random SD 1.x-style pipeline (64 px images, 32 px latents) to ``directory``."""
    import tempfile

    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    directory = Path(directory)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=32,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(4, 8),
        norm_num_groups=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=2,
    )
    vae = AutoencoderKL(
        block_out_channels=[4, 8],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
        norm_num_groups=2,
        sample_size=64,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=VOCAB_SIZE,
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            bos_token_id=49406,
            eos_token_id=49407,
            pad_token_id=49407,
        )
    )
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = write_clip_tokenizer(tmp)
    pipe = StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        # Stable Diffusion 1.x's schedule
        scheduler=PNDMScheduler(
            beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True, steps_offset=1,
            set_alpha_to_one=False,
        ),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(directory, safe_serialization=True)
    return directory
