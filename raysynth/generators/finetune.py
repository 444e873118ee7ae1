"""Generator fine-tuning on the few shots (Diff-Mix, DataDream), with Ray Train.

DreamBooth-style: a UNet LoRA (rank 10 by default, Diff-Mix) on the attention
projections ``to_q, to_k, to_v, to_out.0`` plus one Textual-Inversion token per class
("[Vi]", initialised from the metaclass word), trained with the noise-prediction loss on
the real shots captioned ``"photo of a [Vi] [metaclass]"``.

- ``per_class=False`` (Diff-Mix, DataDream's dataset-level variant): one LoRA for the
  dataset, all tokens trained together.
- ``per_class=True`` (DataDream's class-level variant): one LoRA and one token per
  class, each trained on that class's shots only.

Workers: Ray Train ``TorchTrainer`` (DDP across workers). Every ``checkpoint_every`` steps
rank 0 reports a checkpoint (LoRA + token embeddings as safetensors, optimizer state,
step); a re-run with the same inputs resumes from the latest one. The result is a
directory the ``stable_diffusion`` backend loads with ``pool.options.finetuned``:
``unet_lora.safetensors`` (or ``unet_lora_<c>.safetensors``), ``learned_embeds.safetensors``
and ``tokens.json``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
import time

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from raysynth.atomic import atomic_directory
from raysynth.devices import gpus_have_cuda
from raysynth.config import FinetuneOptions, check_fields
from raysynth.home import fingerprint, raysynth_home
from raysynth.logs import train_logging_config

log = logging.getLogger(__name__)
LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


def class_token(c: int) -> str:
    return f"<raysynth-{c}>"


def _load_components(model: str):
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    return (
        CLIPTokenizer.from_pretrained(model, subfolder="tokenizer"),
        CLIPTextModel.from_pretrained(model, subfolder="text_encoder"),
        AutoencoderKL.from_pretrained(model, subfolder="vae"),
        UNet2DConditionModel.from_pretrained(model, subfolder="unet"),
        DDPMScheduler.from_pretrained(model, subfolder="scheduler"),
    )


def _worker(cfg: dict) -> None:
    """One Ray Train worker: LoRA + TI training with checkpoints and resume."""
    import ray.train
    import ray.train.torch
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    opts = FinetuneOptions(**cfg["options"])
    torch.set_num_threads(max(1, cfg.get("threads", 1)))
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()
    # per-rank streams: LoRA init and dropout (seed + rank); batches, noise and timesteps
    # (seed * 1000 + rank, so the two streams never coincide for a rank below 1000)
    torch.manual_seed(opts.seed + rank)
    g = torch.Generator().manual_seed(opts.seed * 1000 + rank)

    tokenizer, text_encoder, vae, unet, noise_scheduler = _load_components(opts.model)
    tokens = [class_token(c) for c in cfg["class_ids"]]
    table, token_ids, original = _add_tokens(tokenizer, text_encoder, tokens, cfg["metaclass"] or "object")

    optimizer = _attach_lora(opts, vae, unet, text_encoder, table)
    step, resumed_loss = _resume(ray.train.get_checkpoint(), unet, table, token_ids, tokens, optimizer)

    vae.to(device)
    text_encoder.to(device)
    unet.to(device)
    if world > 1:
        unet = ray.train.torch.prepare_model(unet, move_to_device=False)
        text_encoder = ray.train.torch.prepare_model(text_encoder, move_to_device=False)

    images, labels, ids = _training_inputs(cfg, opts, tokenizer)
    local = torch.arange(rank, len(images), world)  # each worker its share of the shots
    scale = getattr(vae.config, "scaling_factor", 0.18215)

    def save_checkpoint(loss: float, resumed_finished: bool = False) -> None:
        bare = unet.module if hasattr(unet, "module") else unet
        metrics = {"step": step, "loss": loss, "resumed_finished": int(resumed_finished)}
        with tempfile.TemporaryDirectory() as d:
            if rank == 0:
                save_file({k: v.contiguous().cpu() for k, v in get_peft_model_state_dict(bare).items()}, os.path.join(d, "lora.safetensors"))
                save_file({t: table[i].detach().cpu().clone() for t, i in zip(tokens, token_ids.tolist())}, os.path.join(d, "embeds.safetensors"))
                torch.save(optimizer.state_dict(), os.path.join(d, "optimizer.pt"))
                Path(d, "state.json").write_text(json.dumps({"step": step, "loss": loss}))
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))
            else:
                ray.train.report(metrics)

    start, loss_value = time.perf_counter(), resumed_loss
    first = step
    while step < opts.steps:
        pick = local[torch.randint(len(local), (opts.batch_size,), generator=g)]
        models = (vae, text_encoder, unet, noise_scheduler)
        loss = _denoising_loss(models, images[pick].to(device), ids[labels[pick]].to(device), scale, g)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"generator fine-tuning: loss is {loss.item()} at step {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():  # only the new tokens' rows learn
            keep = torch.ones(len(table), dtype=torch.bool)
            keep[token_ids] = False
            table[keep] = original[keep].to(table.device)
        step += 1
        loss_value = loss.item()
        if step % opts.checkpoint_every == 0 or step == opts.steps:
            rate = (step - first) / (time.perf_counter() - start)
            if rank == 0:
                print(f"finetune {cfg['run']}: step {step}/{opts.steps} loss {loss_value:.4f} ({rate:.2f} steps/s)", flush=True)
            save_checkpoint(loss_value)
    if first == step:  # resumed from the final checkpoint: nothing trained, say so
        save_checkpoint(loss_value, resumed_finished=True)


def _attach_lora(opts: FinetuneOptions, vae, unet, text_encoder, table) -> torch.optim.Optimizer:
    """Freeze the pipeline, add the UNet LoRA; only the LoRA and the token rows train."""
    from peft import LoraConfig

    vae.requires_grad_(False)
    unet.requires_grad_(False)
    text_encoder.requires_grad_(False)
    table.requires_grad_(True)
    unet.add_adapter(LoraConfig(r=opts.rank, lora_alpha=opts.alpha or opts.rank, init_lora_weights="gaussian", target_modules=LORA_TARGETS))
    lora_params = [p for p in unet.parameters() if p.requires_grad]
    return torch.optim.AdamW(
        [{"params": lora_params, "lr": opts.lr_lora}, {"params": [table], "lr": opts.lr_token, "weight_decay": 0.0}]
    )


def _training_inputs(cfg: dict, opts: FinetuneOptions, tokenizer):
    """(images in [-1, 1] at the training resolution, labels, token ids of each class's prompt)."""
    images = torch.from_numpy(cfg["images"]).float() / 255.0
    images = F.interpolate(images, size=(opts.resolution, opts.resolution), mode="bicubic", align_corners=False).clamp(0, 1) * 2 - 1
    prompts = [opts.prompt.format(name=class_token(c), metaclass=cfg["metaclass"]).strip() for c in range(cfg["num_classes"])]
    ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt").input_ids
    return images, torch.from_numpy(cfg["labels"]), ids


def _add_tokens(tokenizer, text_encoder, tokens: list[str], init_word: str):
    """Textual Inversion: one new token per class, initialised from ``init_word``'s
    embedding; returns (embedding table, new token ids, the table before training)."""
    tokenizer.add_tokens(tokens)
    text_encoder.resize_token_embeddings(len(tokenizer))
    table = text_encoder.get_input_embeddings().weight
    token_ids = torch.tensor(tokenizer.convert_tokens_to_ids(tokens))
    init_id = tokenizer(init_word, add_special_tokens=False).input_ids[0]
    with torch.no_grad():
        table[token_ids] = table[init_id].clone()
    return table, token_ids, table.detach().clone()


def _resume(checkpoint, unet, table, token_ids, tokens: list[str], optimizer) -> tuple[int, float]:
    """Load a worker checkpoint (LoRA, token rows, optimiser); returns (step, loss)."""
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file

    if checkpoint is None:
        return 0, float("nan")
    with checkpoint.as_directory() as d:
        set_peft_model_state_dict(unet, load_file(Path(d) / "lora.safetensors"))
        embeds = load_file(Path(d) / "embeds.safetensors")
        with torch.no_grad():
            table[token_ids] = torch.stack([embeds[t] for t in tokens])
        optimizer.load_state_dict(torch.load(Path(d) / "optimizer.pt", map_location="cpu", weights_only=True))
        state = json.loads((Path(d) / "state.json").read_text())
    return state["step"], state["loss"]


def _denoising_loss(models, x: torch.Tensor, prompt_ids: torch.Tensor, scale: float, g: torch.Generator) -> torch.Tensor:
    """The diffusion objective on a batch: noise (or velocity) prediction MSE at random
    timesteps, conditioned on the class prompts."""
    vae, text_encoder, unet, noise_scheduler = models
    with torch.no_grad():
        latents = vae.encode(x).latent_dist.sample(generator=None) * scale
    noise = torch.randn(latents.shape, generator=g).to(x.device)
    t = torch.randint(noise_scheduler.config.num_train_timesteps, (len(x),), generator=g).to(x.device)
    noisy = noise_scheduler.add_noise(latents, noise, t)
    hidden = text_encoder(prompt_ids)[0]
    pred = unet(noisy, t, encoder_hidden_states=hidden).sample
    if noise_scheduler.config.prediction_type == "v_prediction":
        target = noise_scheduler.get_velocity(latents, noise, t)
    else:
        target = noise
    return F.mse_loss(pred.float(), target.float())


def finetune_key(options: FinetuneOptions, classes: list[str], images: np.ndarray) -> str:
    return fingerprint("finetune-v1", dataclasses.asdict(options) | {"workers": 0}, classes, fingerprint(images.tobytes().hex()[:100000], len(images)))


def finetune_generator(
    options: FinetuneOptions,
    images: np.ndarray,
    labels: np.ndarray,
    classes: list[str],
    metaclass: str,
    output: str | Path,
    resources: dict[str, float],
    storage: str | Path | None = None,
) -> Path:
    """Fine-tune the generator on the shots (uint8 N x 3 x H x W, labels 0..C-1) and write
    the loadable result to ``output`` (atomically). Returns ``output``. ``resources``: of
    one worker (``resources_of(config, "finetune")``)."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from raysynth.generators.backends.stable_diffusion import check_model_available

    check_fields(options)  # the fields' rules, for a library caller that built them directly
    check_model_available(options.model)
    output = Path(output)
    storage = Path(storage) if storage else raysynth_home() / "ray_train"
    key = finetune_key(options, classes, images)
    per_worker = resources
    use_gpu = per_worker.get("GPU", 0) > 0
    runs = [(f"finetune-{key}-c{c}", [c]) for c in range(len(classes))] if options.per_class else [(f"finetune-{key}", list(range(len(classes))))]
    results = []  # (class ids, token embeddings, peft LoRA state, final metrics)
    for run, class_ids in runs:
        finished = _finished_checkpoint(storage / run, options.steps)
        if finished is not None:
            log.info("generator fine-tuning %s: finished earlier, reusing %s", run, finished)
            state = json.loads((finished / "state.json").read_text())
            results.append((class_ids, *_read_checkpoint(finished), {"loss": state["loss"], "resumed_finished": 1}))
            continue
        rows = np.isin(labels, class_ids)
        log.info("generator fine-tuning %s: %d images, classes %s", run, int(rows.sum()), class_ids if options.per_class else "all")
        trainer = TorchTrainer(
            _worker,
            train_loop_config={
                "options": dataclasses.asdict(options),
                "images": images[rows],
                "labels": labels[rows].astype(np.int64),
                "class_ids": class_ids,
                "num_classes": len(classes),
                "metaclass": metaclass,
                "run": run,
                "threads": max(1, (os.cpu_count() or 1) // options.workers),
            },
            scaling_config=ScalingConfig(num_workers=options.workers, use_gpu=use_gpu, resources_per_worker=per_worker),
            torch_config=TorchConfig(backend="nccl" if use_gpu and gpus_have_cuda(per_worker["GPU"]) else "gloo"),
            run_config=RunConfig(
                name=run,  # stable: a re-run resumes from the latest checkpoint
                storage_path=str(storage),
                checkpoint_config=CheckpointConfig(num_to_keep=1),
                failure_config=FailureConfig(max_failures=2),
                logging_config=train_logging_config(),  # Ray Train's chatter off the console (raysynth.logs)
            ),
        )
        result = trainer.fit()
        with result.checkpoint.as_directory() as d:  # a download when storage is remote
            results.append((class_ids, *_read_checkpoint(Path(d)), dict(result.metrics or {})))

    _write_result(output, results, options, classes, metaclass)
    return output


def _write_result(output: Path, results: list, options: FinetuneOptions, classes: list[str], metaclass: str) -> None:
    """The loadable generator (diffusers LoRA files, learned embeddings, tokens.json),
    written into a temporary sibling and renamed over ``output``."""
    from safetensors.torch import save_file

    with atomic_directory(output, replace=True) as tmp:
        embeds = {}
        for class_ids, class_embeds, lora, _ in results:
            embeds.update(class_embeds)
            name = f"unet_lora_{class_ids[0]}.safetensors" if options.per_class else "unet_lora.safetensors"
            _save_diffusers_lora(tmp, lora, name)
        save_file(embeds, tmp / "learned_embeds.safetensors")
        (tmp / "tokens.json").write_text(json.dumps({
            "classes": classes,
            "tokens": [class_token(c) for c in range(len(classes))],
            "per_class": options.per_class,
            "metaclass": metaclass,
            "options": dataclasses.asdict(options),
            "final_loss": [float(m.get("loss", float("nan"))) for *_, m in results],
            # True where a run found its finished checkpoint and trained nothing now
            "resumed_finished": [bool(m.get("resumed_finished")) for *_, m in results],
        }, indent=2))


def _read_checkpoint(directory: Path) -> tuple[dict, dict]:
    from safetensors.torch import load_file

    return load_file(directory / "embeds.safetensors"), load_file(directory / "lora.safetensors")


def _finished_checkpoint(run_dir: Path, steps: int) -> Path | None:
    """The run's checkpoint that reached ``steps``, if an earlier invocation finished it
    (then no worker group is started at all)."""
    best = None
    for state in run_dir.glob("checkpoint_*/state.json"):
        step = json.loads(state.read_text())["step"]
        if step >= steps and (best is None or step > best[0]):
            best = (step, state.parent)
    return best[1] if best else None


def _save_diffusers_lora(directory: Path, peft_state: dict, weight_name: str) -> None:
    """peft's UNet LoRA state dict -> the diffusers file ``load_lora_weights`` reads."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers

    StableDiffusionPipeline.save_lora_weights(
        directory, unet_lora_layers=convert_state_dict_to_diffusers(peft_state), weight_name=weight_name, safe_serialization=True
    )
