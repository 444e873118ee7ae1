"""The README is for users, docs/ builds as a strict mkdocs site, the configuration
reference is generated from the fields, and benchmarks write their figures into
docs/results.md with their date, commit and hardware."""

import importlib.util
import os
import re
import subprocess
import sys

import pytest
from conftest import REPO

from raysynth.reference import configuration_markdown

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def test_the_configuration_reference_is_generated_from_the_fields():
    text = (REPO / "docs" / "configuration.md").read_text()
    assert text == configuration_markdown(), "docs/configuration.md is stale: run `make docs`"
    # every rule a field declares is in the reference (a field whose rule changes changes the page)
    assert "| `loss.bound.lam1` | float | `0.1` | ≥ 0 |" in text
    assert "| `pool.strength` |" in text and "| `--batch-size` |" not in text and "| `batch_size` | int | `4` | ≥ 1 |" in text


def test_the_readme_is_for_users():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 300
    first_block = readme.split("```")[1]
    assert [line.split()[:2] for line in first_block.strip().splitlines()] == [["make", "demo"], ["make", "test"]]
    for heading in ("## Install", "## Quick start", "## Commands", "## Running on a cluster", "## Reading the results"):
        assert heading in readme


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_pages_refer_only_to_what_the_repository_holds(page):
    text = page.read_text()
    for outside in ("../shared", "DESIGN.md", "fresh-check", "farm-studio", "STYLE.md"):
        assert outside not in text, f"{page.name} refers to {outside}, which the repository does not hold"
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if "://" not in target:
            assert (page.parent / target).exists(), f"{page.name} links to {target}, which does not exist"


def test_the_docs_build_as_a_strict_site(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-d", str(tmp_path / "site")],
                         cwd=REPO, capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    built = {p.parent.name for p in (tmp_path / "site").glob("*/index.html")}
    assert {"architecture", "configuration", "methods", "results", "bad-inputs", "usage", "cluster"} <= built


def test_a_recorded_benchmark_replaces_its_section_with_date_commit_and_hardware(tmp_path):
    spec = importlib.util.spec_from_file_location("record", REPO / "benchmarks" / "record.py")
    record = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(record)
    results = tmp_path / "results.md"
    results.write_text("# Results\n\nBy hand.\n")
    record.write("gpu", record.section("gpu", ["python", "benchmarks/gpu.py"], ["gpu: MFU 0.31"]), results)
    record.write("input", record.section("input", ["python", "x.py"], ["input pipeline: ratio 2.4"]), results)
    record.write("gpu", record.section("gpu", ["python", "benchmarks/gpu.py"], ["gpu: MFU 0.42"]), results)
    text = results.read_text()
    assert text.startswith("# Results\n\nBy hand.\n") and text.count("### gpu") == 1 and "MFU 0.31" not in text
    assert "MFU 0.42" in text and "ratio 2.4" in text
    assert re.search(r"### gpu\n\n\d{4}-\d\d-\d\d \d\d:\d\d UTC, commit \w+.*\d+ CPUs", text)
