"""``stable_diffusion``: diffusers Stable Diffusion, img2img (Diff-Mix, Diff-Aug) and
txt2img (Diff-Gen), optionally with the generator fine-tuned by
``jobs/finetune_generator.py`` (UNet LoRA + one Textual-Inversion token per class).

Prompts follow Diff-Mix: ``"photo of a {name} {metaclass}"`` where ``name`` is the class's
learned token ("[Vi]") when a fine-tuned generator is loaded, else the class name.
Every image has its own seeded ``torch.Generator``: the output depends only on the row
of the plan, not on how rows are batched or sharded.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from raysynth.config import ConfigError, field_
from raysynth.data.base import ImageSet
from raysynth.generators.base import Generator, register_generator

log = logging.getLogger(__name__)

SCHEDULERS = {
    "ddim": "DDIMScheduler",
    "dpm++": "DPMSolverMultistepScheduler",
    "euler": "EulerDiscreteScheduler",
    "pndm": "PNDMScheduler",
}
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class StableDiffusionParams:
    """``pool.options`` of this backend; types, choices and ranges are checked when the
    config loads (never first inside a Ray Data actor)."""

    model: str = field_("Hub id or local diffusers directory.", "stable-diffusion-v1-5/stable-diffusion-v1-5")
    scheduler: str = field_("Sampler of the denoising loop.", "dpm++", choices=tuple(SCHEDULERS))
    steps: int = field_("Denoising steps (img2img runs strength x steps of them).", 25, ge=1)
    guidance: float = field_("Classifier-free guidance scale.", 7.5)
    negative_prompt: str = field_("Negative prompt.", "")
    prompt: str = field_("Prompt template; {name} is the class (or its learned token).", "photo of a {name} {metaclass}")
    dtype: str = field_("Weights dtype; auto: float16 on GPU, float32 on CPU.", "auto", choices=("auto", *DTYPES))
    resolution: int = field_("Generation resolution (images are resized to data.image_size after).", 512, ge=1)
    batch_size: int = field_("Images per pipeline call.", 8, ge=1)
    finetuned: str | None = field_("Directory written by jobs/finetune_generator.py.", None)
    lora_scale: float = field_("Scale of the fine-tuned UNet LoRA.", 1.0)


def check_model_available(model: str) -> None:
    """A clear error before any actor starts: a local path must be a diffusers
    directory; a hub id must be cached when the hub is offline."""
    local = Path(model).expanduser().exists() or model.startswith((".", "/", "~")) or model.count("/") != 1
    if local:
        if not (Path(model) / "model_index.json").is_file():
            raise ConfigError(f"pool.options.model: {model} is not a diffusers pipeline directory (no model_index.json)")
        return
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        from huggingface_hub import snapshot_download

        try:
            snapshot_download(model, local_files_only=True)
        except Exception:
            raise ConfigError(
                f"pool.options.model: '{model}' is not in the local Hugging Face cache and HF_HUB_OFFLINE is set; "
                "download it on a machine with internet or give a local diffusers directory"
            ) from None


def add_class_tokens(tokenizer, text_encoder, embeddings: dict[str, torch.Tensor]) -> None:
    """Textual Inversion: add each token to the tokenizer and set its embedding row."""
    new = [t for t in embeddings if t not in tokenizer.get_vocab()]
    if new:
        tokenizer.add_tokens(new)
        text_encoder.resize_token_embeddings(len(tokenizer))
    table = text_encoder.get_input_embeddings().weight
    with torch.no_grad():
        for token, vector in embeddings.items():
            table[tokenizer.convert_tokens_to_ids(token)] = vector.to(table.dtype)


@register_generator("stable_diffusion")
class StableDiffusionGenerator(Generator):
    version = 1
    Params = StableDiffusionParams

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.img2img = None
        self.tokens: list[str] | None = None
        self.per_class = False

    @classmethod
    def parse_options(cls, options):
        params = super().parse_options(options)
        if params.finetuned and not (Path(params.finetuned) / "tokens.json").is_file():
            raise ConfigError(f"pool.options.finetuned: {params.finetuned} has no tokens.json (run jobs/finetune_generator.py)")
        return params

    @classmethod
    def check_environment(cls, config) -> None:
        check_model_available(cls.parse_options(config.options).model)

    def fit(self, shots: ImageSet) -> None:
        """Load the pipeline (and the fine-tuned LoRA/TI). The shots were learned by the
        fine-tuning job, not here."""
        import diffusers
        from diffusers import StableDiffusionImg2ImgPipeline

        p = self.params
        check_model_available(p.model)
        dtype = DTYPES.get(p.dtype) or (torch.float16 if self.device.startswith("cuda") else torch.float32)
        pipe = StableDiffusionImg2ImgPipeline.from_pretrained(
            p.model, dtype=dtype, safety_checker=None, requires_safety_checker=False, feature_extractor=None
        )
        pipe.scheduler = getattr(diffusers, SCHEDULERS[p.scheduler]).from_config(pipe.scheduler.config)
        pipe.set_progress_bar_config(disable=True)
        if p.finetuned:
            self._load_finetuned(pipe, Path(p.finetuned))
        self.img2img = pipe.to(self.device)
        if self.device.startswith("cuda"):
            self.img2img.unet.to(memory_format=torch.channels_last)

    def _load_finetuned(self, pipe, directory: Path) -> None:
        from safetensors.torch import load_file

        info = json.loads((directory / "tokens.json").read_text())
        if info["classes"] != self.classes:
            raise ConfigError(f"pool.options.finetuned: {directory} was fine-tuned on other classes ({info['classes'][:3]}...)")
        add_class_tokens(pipe.tokenizer, pipe.text_encoder, load_file(directory / "learned_embeds.safetensors"))
        self.tokens = info["tokens"]
        self.per_class = bool(info.get("per_class"))
        if self.per_class:
            for c in range(self.num_classes):
                pipe.load_lora_weights(str(directory), weight_name=f"unet_lora_{c}.safetensors", adapter_name=f"c{c}")
        else:
            pipe.load_lora_weights(str(directory), weight_name="unet_lora.safetensors", adapter_name="dataset")
            pipe.set_adapters(["dataset"], adapter_weights=[self.params.lora_scale])

    def prompt(self, c: int) -> str:
        name = self.tokens[c] if self.tokens else self.classes[c]
        return self.params.prompt.format(name=name, metaclass=self.metaclass or "").strip()

    def _groups(self, targets: torch.Tensor) -> list[torch.Tensor]:
        """Row indices per call: per-class LoRA needs one class per call."""
        if self.per_class:
            groups = [torch.nonzero(targets == c).flatten() for c in targets.unique().tolist()]
        else:
            groups = [torch.arange(len(targets))]
        bs = self.params.batch_size
        return [g[i : i + bs] for g in groups for i in range(0, len(g), bs)]

    def _call(self, pipe, rows, targets, seeds, **kwargs) -> torch.Tensor:
        p = self.params
        if self.per_class:
            pipe.set_adapters([f"c{int(targets[rows[0]])}"], adapter_weights=[p.lora_scale])
        device = "cpu" if self.device == "mps" else self.device
        generators = [torch.Generator(device).manual_seed(int(seeds[i])) for i in rows]
        prompts = [self.prompt(int(targets[i])) for i in rows]
        negative = [p.negative_prompt] * len(rows) if p.negative_prompt else None
        out = pipe(
            prompt=prompts, negative_prompt=negative, num_inference_steps=p.steps, guidance_scale=p.guidance,
            generator=generators, output_type="pt", **kwargs,
        ).images
        return out.float().cpu().clamp(0, 1)

    @torch.no_grad()
    def translate(self, references, target_classes, strength, seeds):
        if self.img2img is None:
            raise RuntimeError("stable_diffusion: fit() before translate()")
        p = self.params
        if int(p.steps * strength) == 0:  # no denoising step: the reference itself
            return references.clone(), target_classes.clone()
        size = references.shape[-1]
        images = F.interpolate(references, size=(p.resolution, p.resolution), mode="bicubic", align_corners=False).clamp(0, 1)
        out = torch.empty_like(references)
        for rows in self._groups(target_classes):
            result = self._call(self.img2img, rows.tolist(), target_classes, seeds, image=images[rows].to(self.img2img.dtype), strength=strength)
            out[rows] = _resize(result, size)
        return out, target_classes.clone()

    @torch.no_grad()
    def generate(self, target_classes, seeds, size):
        from diffusers import StableDiffusionPipeline

        if self.img2img is None:
            raise RuntimeError("stable_diffusion: fit() before generate()")
        p = self.params
        txt2img = StableDiffusionPipeline(**self.img2img.components)
        txt2img.set_progress_bar_config(disable=True)
        out = torch.empty(len(target_classes), 3, size, size)
        for rows in self._groups(target_classes):
            result = self._call(txt2img, rows.tolist(), target_classes, seeds, height=p.resolution, width=p.resolution)
            out[rows] = _resize(result, size)
        return out, target_classes.clone()


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    if images.shape[-1] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
