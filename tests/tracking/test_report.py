"""Plots and the HTML report from plain data (no MLflow, no Ray)."""

import base64
import re
import shutil
import subprocess

import numpy as np
import pytest

from raysynth.tracking.report import SearchStory, write_search_report

CLASSES = ["five", "six", "seven"]


def _story():
    rng = np.random.default_rng(0)
    return SearchStory(
        title="raysynth search test",
        summary_text="search finished: 4 trials",
        classes=CLASSES,
        best_weights=[0.1, 0.9, 0.5],
        top_weights=[0.2, 0.8, 0.6],
        quality_labels=["counter", "faithful", "q=+0.30"],
        real_images=[rng.random((4, 3, 8, 8)) for _ in CLASSES],
        synthetic_images=[rng.random((2, 3, 8, 8)) for _ in CLASSES],
        trial_scores=[0.5, 0.7, 0.6, 0.8],
        trial_finished=[True, True, False, True],
        trial_params=[{"train.lr": 1e-3, "loss.ce.synthetic": 1.0, "val_acc": 0.5}, {"train.lr": 2e-3, "loss.ce.synthetic": 2.0, "val_acc": 0.8}],
        confusion=[[5, 1, 0], [0, 6, 0], [1, 0, 5]],
        best_config_yaml="train:\n  lr: 0.002\n",
        finals=[{"label": "best", "test_acc": 0.9, "test_acc_std": 0.01, "val_acc": 0.8}],
    )


def test_report_writes_every_plot_and_an_html_that_embeds_them(tmp_path):
    files = write_search_report(_story(), tmp_path)
    names = {f.name for f in files}
    assert {"weights.png", "real_vs_synthetic.png", "confusion_matrix.png", "history.png", "parallel_coordinates.png", "report.html", "best_config.yaml"} <= names
    for f in files:
        if f.suffix == ".png":
            assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f.stat().st_size > 2000
    html = (tmp_path / "report.html").read_text()
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(images) == 5 and all(base64.b64decode(i)[:4] == b"\x89PNG" for i in images)
    assert "0.9000 ± 0.0100" in html and "search finished: 4 trials" in html


def test_report_without_weights_or_final_models_still_renders(tmp_path):
    story = _story()
    story.best_weights, story.top_weights, story.confusion, story.finals = None, None, None, []
    names = {f.name for f in write_search_report(story, tmp_path)}
    assert "weights.png" not in names and "confusion_matrix.png" not in names and "report.html" in names


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed")
def test_report_images_load_in_headless_chromium(tmp_path):
    """Chromium renders the report; a script in the page counts the images that decoded."""
    write_search_report(_story(), tmp_path)
    page = tmp_path / "report.html"
    html = page.read_text().replace(
        "</body>",
        "<script>window.onload=()=>{const n=[...document.images].filter(i=>i.complete&&i.naturalWidth>0).length;"
        "document.title='loaded:'+n+'/'+document.images.length;}</script></body>",
    )
    page.write_text(html)
    out = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert "<title>loaded:5/5</title>" in out.stdout, out.stderr[-2000:]
