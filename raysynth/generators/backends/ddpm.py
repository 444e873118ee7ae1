"""``ddpm``: a tiny class-conditional diffusion model trained by raysynth on the shots.

The embedded analogue of fine-tuning Stable Diffusion on the few-shot set (Diff-Mix,
DataDream): a diffusers ``UNet2DModel`` with class embeddings, trained with the DDPM
noise-prediction loss on the (quality-controlled) shots at a low resolution (digits are
8 x 8 at the source), with classifier-free guidance (labels dropped with probability
``label_dropout``; the extra embedding is the null class).

img2img is SDEdit with a deterministic DDIM sampler: the reference, resized to the
model's resolution, is noised to step ``floor(s * inference_steps)`` with the image's own
seeded noise and denoised conditioned on the target class. s = 0 returns the reference;
s = 1 is sampling from noise (Diff-Gen).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from raysynth.data.augment import random_affine
from raysynth.data.base import ImageSet
from raysynth.generators.base import Generator, register_generator

log = logging.getLogger(__name__)


@dataclass
class DDPMParams:
    resolution: int = 8
    channels: list[int] = field(default_factory=lambda: [32, 64])
    train_steps: int = 800
    batch_size: int = 64
    lr: float = 2e-3
    train_timesteps: int = 1000
    inference_steps: int = 20
    guidance: float = 2.0
    label_dropout: float = 0.1
    augment: bool = True
    seed: int = 0


def build_unet(params: DDPMParams, num_classes: int):
    from diffusers import UNet2DModel

    channels = tuple(params.channels)
    return UNet2DModel(
        sample_size=params.resolution,
        in_channels=3,
        out_channels=3,
        layers_per_block=1,
        block_out_channels=channels,
        down_block_types=("DownBlock2D",) + ("AttnDownBlock2D",) * (len(channels) - 1),
        up_block_types=("AttnUpBlock2D",) * (len(channels) - 1) + ("UpBlock2D",),
        norm_num_groups=min(8, channels[0]),
        attention_head_dim=min(8, channels[-1]),
        num_class_embeds=num_classes + 1,  # the last one is the null class (guidance)
    )


@register_generator("ddpm")
class DDPMGenerator(Generator):
    version = 1
    Params = DDPMParams
    trainable = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.unet = None

    @classmethod
    def parse_options(cls, options):
        from raysynth.config import ConfigError

        p = super().parse_options(options)
        if not p.channels or any(c < 2 for c in p.channels):
            raise ConfigError(f"pool.options.channels: a non-empty list of widths >= 2, got {p.channels}")
        factor = 2 ** (len(p.channels) - 1)
        if p.resolution < 4 or p.resolution % factor:
            raise ConfigError(f"pool.options.resolution: must be >= 4 and divisible by {factor}, got {p.resolution}")
        for name in ("train_steps", "batch_size", "train_timesteps", "inference_steps"):
            if getattr(p, name) < 1:
                raise ConfigError(f"pool.options.{name}: must be >= 1, got {getattr(p, name)}")
        if p.inference_steps > p.train_timesteps:
            raise ConfigError(f"pool.options.inference_steps: at most train_timesteps ({p.train_timesteps}), got {p.inference_steps}")
        if not 0 <= p.label_dropout < 1:
            raise ConfigError(f"pool.options.label_dropout: must be in [0, 1), got {p.label_dropout}")
        return p

    # ------------------------------------------------------------------ training

    def fit(self, shots: ImageSet) -> None:
        from diffusers import DDPMScheduler

        p = self.params
        torch.manual_seed(p.seed)
        g = torch.Generator().manual_seed(p.seed)
        self.unet = build_unet(p, self.num_classes).to(self.device)
        scheduler = DDPMScheduler(num_train_timesteps=p.train_timesteps)
        opt = torch.optim.AdamW(self.unet.parameters(), lr=p.lr, weight_decay=0.0)
        lr_at = lambda step: 0.5 * (1 + math.cos(math.pi * step / p.train_steps))  # noqa: E731
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
        images = self._to_model(shots.images)
        labels = shots.labels.clone()
        self.unet.train()
        start, last_log = time.perf_counter(), time.perf_counter()
        for step in range(p.train_steps):
            idx = torch.randint(len(images), (p.batch_size,), generator=g)
            x0 = images[idx]
            if p.augment:
                x0 = random_affine(x0 * 0.5 + 0.5, g) * 2 - 1  # warps pad with 0 (= black)
            y = labels[idx].clone()
            y[torch.rand(len(y), generator=g) < p.label_dropout] = self.num_classes
            noise = torch.randn(x0.shape, generator=g)
            t = torch.randint(p.train_timesteps, (len(x0),), generator=g)
            xt = scheduler.add_noise(x0, noise, t)
            pred = self.unet(xt.to(self.device), t.to(self.device), class_labels=y.to(self.device)).sample
            loss = F.mse_loss(pred, noise.to(self.device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if time.perf_counter() - last_log > 15 or step + 1 == p.train_steps:
                last_log = time.perf_counter()
                rate = (step + 1) / (last_log - start)
                log.info(
                    "ddpm fit: step %d/%d loss %.4f (%.1f steps/s, ETA %.0f s)",
                    step + 1, p.train_steps, loss.item(), rate, (p.train_steps - step - 1) / rate,
                )
        self.unet.eval()

    def save(self, directory: Path) -> None:
        from safetensors.torch import save_file

        directory.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous().cpu() for k, v in self.unet.state_dict().items()}, directory / "unet.safetensors")
        (directory / "generator.json").write_text(json.dumps({"name": self.name, "classes": self.classes}))

    def load(self, directory: Path) -> None:
        from safetensors.torch import load_file

        self.unet = build_unet(self.params, self.num_classes)
        self.unet.load_state_dict(load_file(directory / "unet.safetensors"))
        self.unet.to(self.device).eval()

    # ------------------------------------------------------------------ sampling

    def _to_model(self, images: torch.Tensor) -> torch.Tensor:
        """[0, 1] at any size -> [-1, 1] at the model's resolution."""
        r = self.params.resolution
        if images.shape[-1] != r:
            images = F.interpolate(images, size=(r, r), mode="area")
        return images * 2 - 1

    @torch.no_grad()
    def translate(self, references, target_classes, strength, seeds):
        from diffusers import DDIMScheduler

        if self.unet is None:
            raise RuntimeError("ddpm: fit() or load() before translate()")
        p = self.params
        scheduler = DDIMScheduler(num_train_timesteps=p.train_timesteps, clip_sample=True)
        scheduler.set_timesteps(p.inference_steps)
        steps = min(p.inference_steps, int(math.floor(strength * p.inference_steps)))
        if steps == 0:
            return references.clone(), target_classes.clone()
        timesteps = scheduler.timesteps[p.inference_steps - steps :]
        x0 = self._to_model(references)
        # each image's noise from its own seed: output independent of batch composition
        noise = torch.stack([torch.randn(x0.shape[1:], generator=torch.Generator().manual_seed(int(s))) for s in seeds])
        x = scheduler.add_noise(x0, noise, timesteps[:1].repeat(len(x0))).to(self.device)
        y = target_classes.to(self.device)
        null = torch.full_like(y, self.num_classes)
        for t in timesteps:
            tt = t.repeat(len(x)).to(self.device)
            if p.guidance != 1.0:
                both = self.unet(torch.cat([x, x]), torch.cat([tt, tt]), class_labels=torch.cat([y, null])).sample
                cond, uncond = both.chunk(2)
                eps = uncond + p.guidance * (cond - uncond)
            else:
                eps = self.unet(x, tt, class_labels=y).sample
            x = scheduler.step(eps, t, x, eta=0.0).prev_sample
        out = ((x.float().cpu() + 1) / 2).clamp(0, 1)
        size = references.shape[-1]
        if size != p.resolution:
            out = F.interpolate(out, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
        return out, target_classes.clone()
