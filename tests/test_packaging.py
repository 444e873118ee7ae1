"""raysynth as a user installs it: the wheel, non-editable, in a fresh virtualenv, run
from a directory outside the repository, finds the search spaces it ships."""

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh virtualenv holding the built wheel; its dependencies are this
    environment's (a .pth line: the editable raysynth's own .pth hooks are not run)."""
    root = tmp_path_factory.mktemp("wheel")
    dist = root / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", dist, REPO],
        check=True, cwd=root,
    )
    wheel = next(dist.glob("raysynth-*.whl"))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "_raysynth_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps", wheel], check=True)
    return venv, root


def _env(root):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RAY_ADDRESS")}
    env["RAYSYNTH_HOME"] = str(root / "home")
    return env


def test_the_wheel_is_not_the_checkout_and_ships_the_search_spaces(installed):
    venv, root = installed
    out = subprocess.run(
        [venv / "bin" / "python", "-c",
         "import raysynth, importlib.resources as r; print(raysynth.__file__); "
         "print(sorted(p.name for p in r.files('raysynth').joinpath('search_spaces').iterdir()))"],
        check=True, capture_output=True, text=True, cwd=root, env=_env(root),
    ).stdout.splitlines()
    assert str(REPO) not in out[0] and str(venv) in out[0]
    assert all(f"{name}.yaml" in out[1] for name in ("digits", "cub", "flowers", "digits-unicon"))


def test_an_installed_raysynth_finds_the_cub_space_outside_the_repo(installed):
    """`--dataset cub` loads the shipped cub.yaml; the missing data root then exits 2 with
    one line naming data.root (so the space was found and read), and nothing written —
    the contract, through the installed console script in a process of its own."""
    venv, root = installed
    result = subprocess.run(
        [venv / "bin" / "raysynth", "search", "--dataset", "cub", "--data-root", "/nonexistent"],
        capture_output=True, text=True, cwd=root, env=_env(root), timeout=300,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "data.root" in lines[0] and "Traceback" not in result.stderr, result.stderr
    assert not (root / "home" / "mlflow.db").exists() and not (root / "home" / "tune").exists()
