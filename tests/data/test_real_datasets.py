"""CUB-200-2011, Flowers102 and image folders on miniature trees in the real formats."""

import pytest
import torch
import json

from conftest import REPO, _jpeg, make_cub, make_flowers, make_flowers_coop

from raysynth.config import ConfigError, DataConfig
from raysynth.validate import load_config
from raysynth.data import DATASETS, load_split


def _config(root, **kw):
    return DataConfig(root=str(root), shots=kw.pop("shots", 2), image_size=16, val_per_class=kw.pop("val", 2), test_per_class=0, **kw)


def test_cub_layout_names_splits_and_shots(tmp_path):
    root = make_cub(tmp_path / "CUB_200_2011")
    split = load_split("cub", _config(root))
    assert split.classes == ["black footed albatross", "laysan albatross", "sooty albatross"]
    assert split.metaclass == "bird"
    assert len(split.train) == 3 * 2 and len(split.val) == 3 * 2 and len(split.test) == 3 * 3
    # decoded images stay uint8 (a quarter of float32's memory); batches become float where used
    assert split.train.images.shape[1:] == (3, 16, 16) and split.train.images.dtype == torch.uint8
    # the class colours survive decoding: class 2's images are redder than class 0's
    test = split.test.images.float()
    assert test[split.test.labels == 2, 0].mean() > test[split.test.labels == 0, 0].mean()
    again = load_split("cub", _config(root))
    other = load_split("cub", _config(root, seed=1))
    assert torch.equal(again.train.images, split.train.images)  # same seed, same shots
    assert not torch.equal(other.train.images, split.train.images)
    assert torch.equal(other.val.images, split.val.images)  # validation never depends on the seed
    everything = load_split("cub", _config(root, shots="all"))
    assert len(everything.train) == 3 * (8 - 2)


def test_flowers_official_splits(tmp_path):
    root = make_flowers(tmp_path / "flowers102")
    split = load_split("flowers", _config(root))
    assert split.classes == ["pink primrose", "hard-leaved pocket orchid", "canterbury bells"]
    assert split.metaclass == "flower"
    assert (len(split.train), len(split.val), len(split.test)) == (6, 3 * 2, 3 * 3)
    # data.val_per_class takes that many per class from the official validation split
    assert len(load_split("flowers", _config(root, val=1)).val) == 3


def _flowers_yaml(root):
    """flowers.yaml as shipped, on a miniature tree (small images, the whole test split)."""
    return load_config(REPO / "search_spaces" / "flowers.yaml", [f"data.root={root}", "data.image_size=16"]).data


def test_flowers_yaml_loads_coops_split_the_papers_use(tmp_path):
    root = make_flowers_coop(tmp_path / "flowers102", per_split=(17, 3, 2))
    data = _flowers_yaml(root)
    assert data.shots == 16  # the papers' 16 shots: CoOp's train list holds more than 10 per class
    DATASETS["flowers"].check(data)
    split = load_split("flowers", data)
    assert split.classes == ["pink primrose", "hard-leaved pocket orchid", "canterbury bells"]
    assert (len(split.train), len(split.val), len(split.test)) == (3 * 16, 3 * data.val_per_class, 3 * 2)
    assert sorted(split.train.labels.tolist()) == sorted([0, 1, 2] * 16)
    # validation comes from CoOp's val list, never from its train list (the colours differ by list)
    listed = json.loads((root / "split_zhou_OxfordFlowers.json").read_text())
    assert {f for f, _, _ in listed["val"]}.isdisjoint(f for f, _, _ in listed["train"])
    (root / "split_zhou_OxfordFlowers.json").write_text(json.dumps({"train": listed["train"], "test": []}))
    with pytest.raises(ConfigError, match="has no 'val' list") as info:
        DATASETS["flowers"].check(data)
    assert "\n" not in str(info.value)


def test_flowers_yaml_on_the_official_split_is_refused_before_anything_starts(tmp_path):
    root = make_flowers(tmp_path / "flowers102", per_split=(10, 2, 1))  # trnid: 10 per class, as released
    with pytest.raises(ConfigError, match=r"data.shots: 16 shots, but Flowers102's official train split .* holds 10 images per class") as info:
        DATASETS["flowers"].check(_flowers_yaml(root))
    assert "\n" not in str(info.value) and "split_zhou_OxfordFlowers.json" in str(info.value)
    ten = load_config(REPO / "search_spaces" / "flowers.yaml", [f"data.root={root}", "data.image_size=16", "data.shots=10"]).data
    DATASETS["flowers"].check(ten)
    assert len(load_split("flowers", ten).train) == 3 * 10


def test_folder_dataset(tmp_path):
    root = tmp_path / "pets"
    for part, count in (("train", 5), ("test", 2)):
        for c, name in enumerate(["siamese_cat", "pug"]):
            for i in range(count):
                _jpeg(root / part / name / f"{i}.jpg", (100 * c + 20, 50, 50))
    split = load_split("folder", _config(root, metaclass="pet"))
    assert split.classes == ["pug", "siamese cat"] and split.metaclass == "pet"
    assert (len(split.train), len(split.val), len(split.test)) == (4, 4, 4)


@pytest.mark.parametrize("dataset, remove, needle", [
    ("cub", None, "not a directory"),
    ("cub", "train_test_split.txt", "train_test_split.txt is missing"),
    ("flowers", "setid.mat", "setid.mat is missing"),
])
def test_missing_root_or_file_names_it(tmp_path, dataset, remove, needle):
    root = tmp_path / "data"
    if remove is not None:
        (make_cub if dataset == "cub" else make_flowers)(root)
        (root / remove).unlink()
    with pytest.raises(ConfigError, match=needle) as info:
        DATASETS[dataset].check(_config(root))
    assert "\n" not in str(info.value) and "download" in str(info.value)


def test_corrupt_image_and_too_many_shots_are_errors(tmp_path):
    root = make_cub(tmp_path / "cub")
    with pytest.raises(ConfigError, match="data.shots: 7 shots requested"):
        load_split("cub", _config(root, shots=7))  # 8 train - 2 validation = 6 per class
    victim = sorted((root / "images").rglob("*.jpg"))[0]
    victim.write_bytes(b"not a jpeg")
    with pytest.raises(ConfigError, match=f"cannot decode image {victim}"):
        load_split("cub", _config(root, shots="all", val=1))
