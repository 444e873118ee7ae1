"""Oxford Flowers102 (Nilsback & Zisserman, 2008): 102 flower classes, official splits.

Expected layout under ``--data-root``::

    jpg/image_00001.jpg ...   the 8,189 images (102flowers.tgz)
    imagelabels.mat           ``labels``: 1 x 8189, classes 1..102
    setid.mat                 ``trnid``, ``valid``, ``tstid``: 1-based image numbers
    cat_to_name.json          optional: {"1": "pink primrose", ...} overrides the names

The official validation split is used as validation; the k shots come from ``trnid``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from raysynth.config import ConfigError, DataConfig
from raysynth.data.base import FewShotSplit, register_dataset, split_from_files
from raysynth.data.images import dataset_root, require_files

FILES = ["jpg", "imagelabels.mat", "setid.mat"]
WHERE = (
    "download 102flowers.tgz, imagelabels.mat and setid.mat from "
    "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/ into one directory (--data-root)"
)
# The class names used by CoOp/CLIP for Flowers102, in label order 1..102.
NAMES = [
    "pink primrose", "hard-leaved pocket orchid", "canterbury bells", "sweet pea", "english marigold",
    "tiger lily", "moon orchid", "bird of paradise", "monkshood", "globe thistle", "snapdragon",
    "colt's foot", "king protea", "spear thistle", "yellow iris", "globe-flower", "purple coneflower",
    "peruvian lily", "balloon flower", "giant white arum lily", "fire lily", "pincushion flower",
    "fritillary", "red ginger", "grape hyacinth", "corn poppy", "prince of wales feathers",
    "stemless gentian", "artichoke", "sweet william", "carnation", "garden phlox", "love in the mist",
    "mexican aster", "alpine sea holly", "ruby-lipped cattleya", "cape flower", "great masterwort",
    "siam tulip", "lenten rose", "barbeton daisy", "daffodil", "sword lily", "poinsettia",
    "bolero deep blue", "wallflower", "marigold", "buttercup", "oxeye daisy", "common dandelion",
    "petunia", "wild pansy", "primula", "sunflower", "pelargonium", "bishop of llandaff", "gaura",
    "geranium", "orange dahlia", "pink-yellow dahlia", "cautleya spicata", "japanese anemone",
    "black-eyed susan", "silverbush", "californian poppy", "osteospermum", "spring crocus",
    "bearded iris", "windflower", "tree poppy", "gazania", "azalea", "water lily", "rose",
    "thorn apple", "morning glory", "passion flower", "lotus", "toad lily", "anthurium",
    "frangipani", "clematis", "hibiscus", "columbine", "desert-rose", "tree mallow", "magnolia",
    "cyclamen", "watercress", "canna lily", "hippeastrum", "bee balm", "ball moss", "foxglove",
    "bougainvillea", "camellia", "mallow", "mexican petunia", "bromelia", "blanket flower",
    "trumpet creeper", "blackberry lily",
]
assert len(NAMES) == 102


def _root(config: DataConfig) -> Path:
    if not config.root:
        raise ConfigError(f"data.root: dataset 'flowers' needs --data-root; {WHERE}")
    return dataset_root(config.root, "flowers", WHERE)


def check(config: DataConfig) -> None:
    require_files(_root(config), FILES, "Flowers102", WHERE)


def _mat(path: Path, key: str) -> np.ndarray:
    from scipy.io import loadmat

    try:
        data = loadmat(path)
    except Exception as exc:  # scipy raises several types for a damaged file
        raise ConfigError(f"data.root: cannot read {path} ({type(exc).__name__})") from None
    if key not in data:
        raise ConfigError(f"data.root: {path} has no '{key}' array")
    return np.asarray(data[key]).astype(np.int64).ravel()


@register_dataset("flowers", check=check)
def load_flowers_split(config: DataConfig) -> FewShotSplit:
    root = _root(config)
    check(config)
    labels = _mat(root / "imagelabels.mat", "labels") - 1
    names = NAMES
    if (root / "cat_to_name.json").is_file():
        mapping = json.loads((root / "cat_to_name.json").read_text())
        names = [mapping.get(str(i + 1), NAMES[i] if i < len(NAMES) else str(i + 1)) for i in range(labels.max() + 1)]
    names = names[: labels.max() + 1]

    def part(key: str):
        numbers = _mat(root / "setid.mat", key)
        return [root / "jpg" / f"image_{n:05d}.jpg" for n in numbers], labels[numbers - 1]

    return split_from_files("flowers", config, list(names), "flower", train=part("trnid"), test=part("tstid"), val=part("valid"))
