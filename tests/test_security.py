"""Security: no pickle anywhere raysynth reads, safe YAML, safe archives, local binds."""

import ast
import io
import os
import pickle
import tarfile
import zipfile
from pathlib import Path

import pytest

from raysynth.config import ConfigError, ModelConfig
from raysynth.data.archive import extracted_root, safe_extract

PACKAGE = Path(__file__).resolve().parents[1] / "raysynth"


def _calls(name_check):
    """(file, line) of every call in the package whose dotted name satisfies name_check."""
    hits = []
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = ast.unparse(node.func)
                if name_check(name, node):
                    hits.append((path.name, node.lineno, name))
    return hits


def test_every_torch_load_is_weights_only_and_no_pickle_or_unsafe_yaml():
    def unsafe_torch_load(name, node):
        return name.endswith("torch.load") and not any(
            k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True for k in node.keywords
        )

    assert _calls(unsafe_torch_load) == []
    assert _calls(lambda name, node: name in ("yaml.load", "yaml.unsafe_load", "yaml.full_load")) == []
    assert _calls(lambda name, node: name.startswith(("pickle.", "cloudpickle.", "dill.")) or name == "np.load" and any(
        k.arg == "allow_pickle" and getattr(k.value, "value", False) is True for k in node.keywords)) == []
    assert len(_calls(lambda name, node: name.endswith("torch.load"))) >= 3  # the scan sees them


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch /tmp/raysynth-pwned",))


def test_a_pickled_checkpoint_is_refused(tmp_path):
    from raysynth.models.backbone import create_backbone

    bad = tmp_path / "model.pt"
    with open(bad, "wb") as f:
        pickle.dump({"visual.proj": _Exploit()}, f)
    with pytest.raises(Exception) as info:
        create_backbone(ModelConfig(name="raysynth-tiny"), checkpoint=bad)
    assert "weights_only" in str(info.value) or "Unpickl" in type(info.value).__name__ + str(info.value)
    assert not Path("/tmp/raysynth-pwned").exists()


def test_pool_store_holds_only_npy_parquet_json(ray_session, tiny_config, tmp_path):
    import numpy as np

    from raysynth.context import split_of
    from raysynth.pool import PoolStore
    from raysynth.pool.pipeline import generate_pool

    store = PoolStore(tmp_path / "pools")
    key, _ = generate_pool(split_of(tiny_config), tiny_config.pool, store=store)
    files = sorted(p.name for p in store.path(key).iterdir())
    assert files == ["manifest.parquet", "meta.json", "shards"]
    shards = sorted(p.suffix for p in store.shard_dir(key).iterdir())
    assert shards and set(shards) == {".npy", ".parquet"} and shards.count(".npy") == shards.count(".parquet")
    for npy in store.shard_dir(key).glob("*.npy"):
        np.load(npy, allow_pickle=False)  # plain arrays, no objects


def _tar(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for name, kind, target in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                data = b"x"
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                info.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
                info.linkname = target
                tar.addfile(info)
    return path


@pytest.mark.parametrize("members, needle", [
    ([("../evil.txt", "file", None)], "outside"),
    ([("/tmp/evil.txt", "file", None)], "outside"),
    ([("data/link", "symlink", "/etc/passwd")], "points outside"),
    ([("data/link", "symlink", "../../x")], "points outside"),
])
def test_archive_extraction_refuses_paths_outside_the_target(tmp_path, members, needle):
    archive = _tar(tmp_path / "bad.tgz", [("data/ok.txt", "file", None), *members])
    target = tmp_path / "out" / "data"
    with pytest.raises(ConfigError, match=needle):
        safe_extract(archive, target)
    assert not target.exists() and not (tmp_path / "evil.txt").exists()
    assert [p.name for p in (tmp_path / "out").iterdir()] == []  # no temporary leftovers


def test_zip_slip_refused_and_good_archive_extracted(tmp_path):
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("../../evil.txt", "x")
    with pytest.raises(ConfigError, match="outside"):
        safe_extract(bad, tmp_path / "zip")
    good = _tar(tmp_path / "CUB_200_2011.tgz", [("CUB_200_2011/images.txt", "file", None)])
    root = extracted_root(good)
    assert root.name == "CUB_200_2011" and (root / "images.txt").read_bytes() == b"x"
    assert extracted_root(good) == root  # once


def test_servers_bind_localhost_by_default():
    from raysynth.cli import build_parser, ui_command

    args = build_parser().parse_args(["ui"])
    cmd = ui_command(args, "sqlite:///x.db")
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1"
    args = build_parser().parse_args(["ui", "--host", "0.0.0.0"])
    assert ui_command(args, "sqlite:///x.db")[cmd.index("--host") + 1] == "0.0.0.0"
    from raysynth.cluster import LOCAL_RAY

    assert LOCAL_RAY["dashboard_host"] == "127.0.0.1"
