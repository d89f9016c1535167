"""The served HTML page, loaded in a real headless browser (skipped only where Chromium is not installed)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("matplotlib")

from test_server import Running, get

from plada_edge.server.http import create_app, load_published
from plada_edge.server.tasks import build_tasks

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.fixture(scope="module")
def site(tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp("page")
    (root / "tasks.toml").write_text(
        f'[server]\ncache = "cache"\nreference = "{tiny["pack"].path}"\n\n'
        f'[tasks.stripes]\ntarget = "{tiny["root"] / "stripes.npz"}"\narch = "tiny_cnn"\nepochs = 1\nsize = 16\n'
        "batch_size = 32\ncount = 60\n"
    )
    build_tasks(root / "tasks.toml")
    tasks = load_published(root / "cache")
    with Running(create_app(tasks)) as url:
        yield url, root


def test_page_lists_tasks_and_serves_their_pictures(site):
    url, _ = site
    status, headers, body = get(url + "/")
    assert status == 200 and "text/html" in headers["content-type"]
    text = body.decode()
    assert "stripes" in text and "/v1/tasks/stripes/sheet.png" in text
    for kind in ("sheet", "labels"):
        status, headers, png = get(f"{url}/v1/tasks/stripes/{kind}.png")
        assert status == 200 and headers["content-type"] == "image/png" and png[:8] == b"\x89PNG\r\n\x1a\n"
    assert get(f"{url}/v1/tasks/stripes/data.png")[0] == 404  # only the pictures, nothing else of the task


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (.ci/run installs Debian's chromium)")
def test_page_in_a_real_browser(site, tmp_path):
    url, _ = site
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--window-size=1200,1400",
        "--virtual-time-budget=5000",
    ]
    shot = tmp_path / "page.png"
    subprocess.run([CHROMIUM, *flags, f"--screenshot={shot}", url + "/"], capture_output=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 10_000
    dom = subprocess.run(
        [CHROMIUM, *flags, "--dump-dom", url + "/"], capture_output=True, text=True, timeout=120
    ).stdout
    widths = [int(w) for w in re.findall(r'data-natural-width="(\d+)"', dom)]
    assert len(widths) == 2 and all(w > 0 for w in widths), dom[-2000:]  # every picture loaded
    assert "2 pictures loaded" in dom
