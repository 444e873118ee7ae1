"""The model a search was for, as an MLflow model.

After the finals, the best config's first-seed classifier is logged on the search's
parent run at artifact path ``model`` (``runs:/<parent>/model``): an MLflow pyfunc whose
``predict`` takes a batch of images (N x H x W x 3, uint8) and returns their class names.
Inside the model directory, beside MLflow's own files:

* ``classifier/classifier.pt`` — the whole classifier's state dict (backbone, LoRA, head,
  projection) and, for the two-stage protocol, the frozen-feature classifier it predicts
  with. Backbone weights are included, so loading downloads nothing.
* ``classifier/classifier.json`` — the config it was trained with (which rebuilds the
  architecture), the class names and the image size it expects.
* ``code/raysynth`` — this package, so the model loads where raysynth is not installed
  (torch, open_clip and peft are its pip requirements); ``pyfunc_entry.py`` is the code
  MLflow runs to load it (models-from-code: no pickled Python object).

:class:`SearchedClassifier` is the same model without MLflow: ``classify`` returns the
class names and their probabilities (``raysynth predict`` prints both).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

MODEL_PATH = "model"  # artifact path on the parent run
ARTIFACT_KEY = "classifier"
WEIGHTS_FILE = "classifier.pt"
META_FILE = "classifier.json"
# what the classifier imports (pip requirements of the logged model, at the versions here)
REQUIREMENTS = ("torch", "open_clip_torch", "peft", "numpy", "pillow", "pyyaml")


def to_model_input(images: np.ndarray | torch.Tensor, size: int) -> torch.Tensor:
    """N x H x W x 3 uint8 images as the classifier takes them: N x 3 x size x size uint8,
    each decoded as the datasets decode files (:func:`raysynth.data.images.square`);
    images already ``size`` x ``size`` pass unchanged."""
    from PIL import Image

    from raysynth.data.images import square

    x = np.asarray(images)
    if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != np.uint8:
        raise ValueError(f"images: expected N x H x W x 3 uint8, got {x.shape} {x.dtype}")
    if x.shape[1:3] == (size, size):
        return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    return torch.from_numpy(np.stack([square(Image.fromarray(image), size) for image in x]))


def image_files(paths: list[str]) -> list[Path]:
    """The files to classify: each file given, and every image under each folder given
    (sorted); ConfigError (exit 2) on a path that does not exist or a folder without images."""
    from raysynth.config import ConfigError
    from raysynth.data.folder import SUFFIXES

    files = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
            if not found:
                raise ConfigError(f"{given}: no image files ({', '.join(sorted(SUFFIXES))}) in this folder")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise ConfigError(f"{given}: no such file or folder")
    return files


def classify_files(classifier: "SearchedClassifier", files: list[Path], batch_size: int = 64):
    """(path, class, probability) of each image file, decoded as the datasets decode theirs,
    ``batch_size`` at a time; ConfigError on a file that is not an image."""
    from PIL import Image, UnidentifiedImageError

    from raysynth.config import ConfigError
    from raysynth.data.images import square

    for start in range(0, len(files), batch_size):
        batch, images = files[start : start + batch_size], []
        for path in batch:
            try:
                with Image.open(path) as im:
                    images.append(square(im, classifier.image_size).transpose(1, 2, 0))
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
                raise ConfigError(f"{path}: cannot decode image ({type(exc).__name__})") from None
        names, probs = classifier.classify(np.stack(images))
        yield from zip(batch, names, probs)


class SearchedClassifier:
    """A trained raysynth classifier with its class names: images in, classes out."""

    def __init__(self, model: torch.nn.Module, classes: list[str], image_size: int, probe: dict | None = None):
        self.model = model.eval()
        self.classes = list(classes)
        self.image_size = image_size
        self.probe = probe  # two-stage: the frozen-feature classifier (weight, bias)

    @classmethod
    def load(cls, directory: str | Path) -> "SearchedClassifier":
        """Rebuild from :func:`save_classifier`'s files: the architecture from the config
        (random weights, no download), then every weight from the state dict."""
        from raysynth.config import Config, from_dict
        from raysynth.models.backbone import create_model
        from raysynth.train.model import assemble_classifier

        directory = Path(directory)
        meta = json.loads((directory / META_FILE).read_text())
        config = from_dict(Config, meta["config"])
        saved = torch.load(directory / WEIGHTS_FILE, map_location="cpu", weights_only=True)
        model = assemble_classifier(config, create_model(config.model.name), meta["classes"], meta["metaclass"])
        model.load_state_dict(saved["model"])
        return cls(model, meta["classes"], meta["image_size"], saved.get("probe"))

    @torch.no_grad()
    def probabilities(self, images: np.ndarray | torch.Tensor, batch_size: int = 256) -> np.ndarray:
        """N x C class probabilities of N x H x W x 3 uint8 images."""
        from raysynth.train.evaluate import as_input, device_of

        x = to_model_input(images, self.image_size)
        device = device_of(self.model)
        out = []
        for i in range(0, len(x), batch_size):
            batch = as_input(x[i : i + batch_size], device)
            if self.probe is not None:
                logits = F.linear(self.model.features(batch), self.probe["weight"], self.probe["bias"])
            else:
                logits = self.model(batch)
            out.append(logits.float().softmax(-1).cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, len(self.classes)), np.float32)

    def classify(self, images: np.ndarray | torch.Tensor) -> tuple[list[str], np.ndarray]:
        """(class name, its probability) of each image."""
        probs = self.probabilities(images)
        best = probs.argmax(1)
        return [self.classes[i] for i in best], probs[np.arange(len(best)), best]


def save_classifier(directory: Path, config, state: dict, context) -> None:
    """Write :class:`SearchedClassifier`'s files from a training state (one model's
    ``{"model": trainable weights, "probes": [...]}``, as Ray Train checkpoints it) and
    the run context it trained in (its backbone, its classes)."""
    from raysynth.train.loop import load_trainable_state
    from raysynth.train.model import build_model

    model = build_model(config, context).cpu()  # the context's backbone + fresh LoRA and head
    load_trainable_state(model, state["model"])  # ... then the trained ones
    probes = state.get("probes") or []
    directory.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "probe": probes[0] if probes else None}, directory / WEIGHTS_FILE)
    meta = {"config": config.to_dict(), "classes": list(context.classes), "metaclass": context.metaclass, "image_size": config.data.image_size}
    (directory / META_FILE).write_text(json.dumps(meta, indent=1))


class RaysynthClassifier(mlflow.pyfunc.PythonModel):
    """MLflow's face of :class:`SearchedClassifier`: images in, class names out. Logged
    from code (``pyfunc_entry.py``), as MLflow recommends over a pickled object."""

    def load_context(self, context) -> None:
        self.classifier = SearchedClassifier.load(context.artifacts[ARTIFACT_KEY])

    def predict(self, context, model_input: np.ndarray, params=None) -> np.ndarray:
        names, _ = self.classifier.classify(model_input)
        return np.asarray(names, dtype=object)


def _requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for name in REQUIREMENTS:
        try:
            out.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            out.append(name)
    return out


def log_searched_model(client, run_id: str, config, state: dict, context, register: str | None = None) -> str:
    """Log the classifier on ``run_id`` at artifact path ``model``; with ``register``,
    also as a new version of that registered model. Returns the model's URI."""
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ColSpec, Schema, TensorSpec

    import raysynth
    from raysynth.home import environment

    size = config.data.image_size
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, -1, -1, 3))]), outputs=Schema([ColSpec("string", "class")])
    )
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / ARTIFACT_KEY
        save_classifier(weights, config, state, context)
        code = Path(tmp) / "code" / "raysynth"  # the package's sources, without compiled caches
        shutil.copytree(Path(raysynth.__file__).parent, code, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        path = Path(tmp) / MODEL_PATH
        # saving copies the local artifacts with MLflow's download progress bar: not on the console
        with environment(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false"):
            mlflow.pyfunc.save_model(
                path,
                python_model=str(Path(__file__).with_name("pyfunc_entry.py")),
                artifacts={ARTIFACT_KEY: str(weights)},
                code_paths=[str(code)],
                signature=signature,
                input_example=np.zeros((1, size, size, 3), np.uint8),
                pip_requirements=_requirements(),
                metadata={"classes": list(context.classes), "image_size": size},
            )
        client.log_artifacts(run_id, str(path), MODEL_PATH)
    uri = f"runs:/{run_id}/{MODEL_PATH}"
    log.info("model: the best config's classifier logged as %s (predict: N x H x W x 3 uint8 -> class names)", uri)
    if register:
        version = register_model(client, uri, run_id, register)
        log.info("model: registered as '%s' version %s (models:/%s/%s)", register, version, register, version)
    return uri


def register_model(client, uri: str, run_id: str, name: str) -> str:
    """A new version of registered model ``name`` (created on first use) from ``uri``."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code):
            raise
    source = f"{client.get_run(run_id).info.artifact_uri}/{MODEL_PATH}"
    return client.create_model_version(name, source, run_id=run_id).version


def load_classifier(model_uri: str, tracking_uri: str | None = None) -> SearchedClassifier:
    """The classifier behind an MLflow model URI (runs:/, models:/, a path) of the store at
    ``tracking_uri`` (which also serves the registry), without touching MLflow's global
    tracking URI: the model is downloaded to a temporary directory and loaded from there."""
    import mlflow.artifacts
    import mlflow.pyfunc

    with tempfile.TemporaryDirectory(prefix="raysynth-model-") as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=tmp, tracking_uri=tracking_uri, registry_uri=tracking_uri)
        return mlflow.pyfunc.load_model(local).unwrap_python_model().classifier
