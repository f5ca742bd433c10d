"""The web demo in a real browser: `gmp-tl app` on localhost, driven by headless Chromium (Playwright)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import soundfile
from conftest import EMODB_DIR, speechlike, tiny_model

from gmp_tl_hf import default_feature_extractor

pytest.importorskip("gradio", reason="gradio is not installed (pip install 'gmp-tl-hf[app]')")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)
if CHROMIUM is None:
    pytest.skip("no Chromium executable (apt-get install chromium)", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def served_app(tmp_path):
    """The app for a tiny checkpoint, on a free port of 127.0.0.1, until the test ends."""
    checkpoint = tmp_path / "checkpoint"
    tiny_model(seed=3, gender_head_trained=True).save_pretrained(checkpoint)
    default_feature_extractor().save_pretrained(checkpoint)
    port = free_port()
    command = [sys.executable, "-m", "gmp_tl_hf.cli", "app", str(checkpoint), "--port", str(port)]
    command += ["--max_upload_mb", "1"]
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    log = (tmp_path / "app.log").open("w")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(url, timeout=1)
                break
            except OSError:
                if server.poll() is not None:
                    pytest.fail(f"the app exited: {(tmp_path / 'app.log').read_text()[-2000:]}")
                time.sleep(0.5)
        else:
            pytest.fail(f"the app did not answer: {(tmp_path / 'app.log').read_text()[-2000:]}")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=20)
        log.close()


def a_clip(tmp_path: Path) -> Path:
    """A real EmoDB clip where ../shared is present, else a speech-like signal."""
    clips = sorted(EMODB_DIR.glob("*.wav"))
    if clips:
        return clips[0]
    path = tmp_path / "clip.wav"
    soundfile.write(path, speechlike(2.0), 16000)
    return path


def test_upload_a_clip_and_see_label_gender_and_timeline(served_app, tmp_path):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(served_app)
        page.get_by_text("Speech emotion recognition (GMP-TL)").wait_for(timeout=30_000)
        page.locator("input[type=file]").first.set_input_files(str(a_clip(tmp_path)))
        page.get_by_role("button", name="Analyse").click()
        page.get_by_text("Speaker:").wait_for(timeout=60_000)
        page.locator("img[src*='.png']").first.wait_for(timeout=60_000)
        text = page.inner_text("body")
        assert any(label in text for label in ("neutral", "happy", "angry", "sad"))
        assert "female" in text or "male" in text
        page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
        browser.close()
    assert (tmp_path / "app.png").stat().st_size > 20_000


def test_the_app_binds_localhost_and_refuses_large_uploads(served_app, tmp_path):
    assert served_app.startswith("http://127.0.0.1:")
    big = tmp_path / "long.wav"
    soundfile.write(big, speechlike(40.0), 16000)  # 1.3 MB over the 1 MB limit
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(served_app)
        page.get_by_text("Speech emotion recognition (GMP-TL)").wait_for(timeout=30_000)
        page.locator("input[type=file]").first.set_input_files(str(big))
        page.get_by_text("exceed the maximum allowed size").first.wait_for(timeout=30_000)  # refused on upload
        browser.close()
