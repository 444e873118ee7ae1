"""Oxford Flowers102 (Nilsback & Zisserman, 2008): 102 flower classes, official splits.

Expected layout under ``--data-root``::

    jpg/image_00001.jpg ...   the 8,189 images (102flowers.tgz)
    imagelabels.mat           ``labels``: 1 x 8189, classes 1..102
    setid.mat                 ``trnid``, ``valid``, ``tstid``: 1-based image numbers
    cat_to_name.json          optional: {"1": "pink primrose", ...} overrides the names
    split_zhou_OxfordFlowers.json   optional: CoOp's split (Zhou et al.), as DataDream and
                              ICML 2025 use it: {"train"|"val"|"test": [[file under jpg/,
                              label 0..101, class name], ...]}; then the .mat files are
                              not needed

With CoOp's split file (the papers' protocol) the k shots come from its train list (50
or more per class), validation from its val list, test from its test list. Without it,
the official split: shots from ``trnid``, which holds 10 images per class (more shots
are refused before anything starts), validation from ``valid``, test from ``tstid``.
``data.val_per_class`` images per class are taken from the validation split (<= 0: all).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from raysynth.config import ConfigError, DataConfig, read_json
from raysynth.data.base import FewShotSplit, register_dataset, split_from_files
from raysynth.data.images import dataset_root, require_files

FILES = ["jpg", "imagelabels.mat", "setid.mat"]
SPLIT_FILE = "split_zhou_OxfordFlowers.json"  # CoOp's split: the papers' protocol
PARTS = ("train", "val", "test")
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


def _coop_split(root: Path) -> dict[str, list] | None:
    """CoOp's split file, checked entry by entry; None when absent."""
    path = root / SPLIT_FILE
    if not path.is_file():
        return None
    split = read_json(path)
    for part in PARTS:
        entries = split.get(part) if isinstance(split, dict) else None
        if not isinstance(entries, list) or not entries:
            raise ConfigError(f"data.root: {path} has no '{part}' list")
        for entry in entries:
            if not (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], str)
                    and isinstance(entry[1], int) and 0 <= entry[1] < len(NAMES)):
                raise ConfigError(f"data.root: {path} '{part}' entry {entry!r} is not [file under jpg/, label 0..101, name]")
    return split


def check(config: DataConfig) -> None:
    root = _root(config)
    if _coop_split(root) is not None:
        require_files(root, ["jpg"], "Flowers102", WHERE)
        return
    require_files(root, FILES, "Flowers102", WHERE)
    labels = _mat(root / "imagelabels.mat", "labels") - 1
    per_class = np.bincount(labels[_mat(root / "setid.mat", "trnid") - 1])
    fewest = int(per_class[per_class > 0].min()) if (per_class > 0).any() else 0
    if config.shots > fewest:
        raise ConfigError(
            f"data.shots: {config.shots} shots, but Flowers102's official train split (setid.mat trnid) holds "
            f"{fewest} images per class; put CoOp's {SPLIT_FILE} (the papers' split) in {root}, or ask for at most {fewest}"
        )


def _mat(path: Path, key: str) -> np.ndarray:
    from scipy.io import loadmat

    try:
        data = loadmat(path)
    except Exception as exc:  # scipy raises several types for a damaged file
        raise ConfigError(f"data.root: cannot read {path} ({type(exc).__name__})") from None
    if key not in data:
        raise ConfigError(f"data.root: {path} has no '{key}' array")
    return np.asarray(data[key]).astype(np.int64).ravel()


def _from_coop(root: Path, config: DataConfig, split: dict[str, list]) -> FewShotSplit:
    names = list(NAMES)
    for part in PARTS:
        for _, label, name in split[part]:
            names[label] = name
    classes = max(label for part in PARTS for _, label, _ in split[part]) + 1

    def part(key: str):
        return [root / "jpg" / file for file, _, _ in split[key]], np.array([label for _, label, _ in split[key]])

    return split_from_files("flowers", config, names[:classes], "flower", train=part("train"), test=part("test"),
                            val=part("val"))


@register_dataset("flowers", check=check)
def load_flowers_split(config: DataConfig) -> FewShotSplit:
    root = _root(config)
    check(config)
    coop = _coop_split(root)
    if coop is not None:
        return _from_coop(root, config, coop)
    labels = _mat(root / "imagelabels.mat", "labels") - 1
    names = NAMES
    if (root / "cat_to_name.json").is_file():
        mapping = read_json(root / "cat_to_name.json")
        if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
            raise ConfigError(f"data.root: {root / 'cat_to_name.json'} is not a mapping of class number to name")
        names = [mapping.get(str(i + 1), NAMES[i] if i < len(NAMES) else str(i + 1)) for i in range(labels.max() + 1)]
    names = names[: labels.max() + 1]

    def part(key: str):
        numbers = _mat(root / "setid.mat", key)
        return [root / "jpg" / f"image_{n:05d}.jpg" for n in numbers], labels[numbers - 1]

    return split_from_files("flowers", config, list(names), "flower", train=part("trnid"), test=part("tstid"), val=part("valid"))
