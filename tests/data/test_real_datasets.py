"""CUB-200-2011, Flowers102 and image folders on miniature trees in the real formats."""

import pytest
import torch
import json
import re

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


def _cub_with(root, file, edit):
    make_cub(root)
    path = root / file
    path.write_text(edit(path.read_text()))
    return root


@pytest.mark.parametrize("file, edit, needle", [
    ("image_class_labels.txt", lambda t: t.replace("1 1\n", "1 7\n", 1), "image 1 has class '7', which classes.txt lacks (3 classes)"),
    ("image_class_labels.txt", lambda t: t + "999 1\n", "image_class_labels.txt names image id 999, which images.txt lacks"),
    ("train_test_split.txt", lambda t: t.replace("1 1\n", "1 yes\n", 1), "image 1 has 'yes', expected 1 (train) or 0 (test)"),
    ("train_test_split.txt", lambda t: t.split("\n", 1)[1], "image id 1 of images.txt has no line in"),
])
def test_cub_index_files_that_disagree_are_one_line(tmp_path, file, edit, needle):
    """Every id, path and class consistent across CUB's four index files, checked before
    any image is decoded (a class id classes.txt lacks was a KeyError traceback)."""
    root = _cub_with(tmp_path / "cub", file, edit)
    with pytest.raises(ConfigError, match=re.escape(needle)) as info:
        load_split("cub", _config(root))
    assert "\n" not in str(info.value)


def test_a_folder_dataset_with_one_class_is_refused(tmp_path):
    root = tmp_path / "folder"
    for split in ("train", "test"):
        for i in range(4):
            _jpeg(root / split / "only_cat" / f"{i}.jpg", (10 * i, 80, 160))
    with pytest.raises(ConfigError, match=r"data.root: folder has 1 class \(only cat\); a classifier needs at least 2"):
        load_split("folder", _config(root, shots=1, val=1))


def test_a_decompression_bomb_is_one_line_naming_the_file(tmp_path):
    """A PNG that declares more pixels than Pillow's limit is refused before it is decoded
    (past twice the limit Pillow raised an error, below it only warned)."""
    from PIL import Image

    root = tmp_path / "folder"
    for split in ("train", "test"):
        for c in ("cat", "dog"):
            for i in range(3):
                _jpeg(root / split / c / f"{i}.jpg", (10 * i, 80, 160 if c == "cat" else 20))
    bomb = root / "train" / "cat" / "9.png"
    Image.new("1", (20_000, 20_000)).save(bomb)  # 400 Mpx of one bit: a 50 KB file
    assert 20_000 * 20_000 > Image.MAX_IMAGE_PIXELS
    with pytest.raises(ConfigError, match=f"image {re.escape(str(bomb))} declares more than Pillow's limit") as info:
        load_split("folder", _config(root, shots="all", val=1))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("text, needle", [
    ("{not json", "cat_to_name.json is not JSON (line 1, column 2"),
    ('{"1": "pink primrose", "1": "rose"}', "key '1' given twice in one object"),
    ('["pink primrose"]', "cat_to_name.json is not a mapping of class number to name"),
])
def test_flowers_cat_to_name_that_is_not_a_mapping_is_one_line(tmp_path, text, needle):
    root = make_flowers(tmp_path / "flowers")
    (root / "cat_to_name.json").write_text(text)
    with pytest.raises(ConfigError, match=re.escape(needle)):
        load_split("flowers", _config(root, shots=2, val=1))
