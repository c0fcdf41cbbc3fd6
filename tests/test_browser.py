"""A real JupyterLab in a real browser: run 04_synthetic_video, move the frame slider.

Needs Debian's ``chromium`` on PATH and the ``playwright`` package (no downloaded
browser). Without them the test skips, unless ``$VIDGEN_NB_REQUIRE_BROWSER`` is set
(``.ci/run`` sets it), in which case it fails.
"""

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = "04_synthetic_video.ipynb"
REQUIRED = bool(os.environ.get("VIDGEN_NB_REQUIRE_BROWSER"))


def _missing() -> str | None:
    if shutil.which("chromium") is None:
        return "Debian's chromium is not on PATH (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(tmp_path):
    """JupyterLab on 127.0.0.1 over a copy of the notebook; yields (url, token)."""
    reason = _missing()
    if reason:
        if REQUIRED:
            pytest.fail(f"browser test required but {reason}")
        pytest.skip(reason)
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(ROOT / "notebooks" / NOTEBOOK, work / NOTEBOOK)
    settings = tmp_path / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    env = dict(os.environ, HOME=str(tmp_path), VIDGEN_NB_FAST="1",
               JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"))
    port, token = _free_port(), secrets.token_hex(16)
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}",
         "--ServerApp.ip=127.0.0.1", f"--ServerApp.token={token}",
         f"--ServerApp.root_dir={work}", "--LabApp.expose_app_in_browser=True", "--allow-root"],
        env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "lab.log", "w"))
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("JupyterLab did not start:\n" + (tmp_path / "lab.log").read_text()[-2000:])
        yield url, token, tmp_path
    finally:
        server.terminate()  # stopped by its PID
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


def test_video_explorer_in_jupyterlab(lab):
    from playwright.sync_api import sync_playwright

    url, token, tmp = lab
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=shutil.which("chromium"),
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                  "--disable-background-networking", "--disable-component-update",
                  "--no-first-run", "--disable-sync"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{url}/lab/tree/{NOTEBOOK}?token={token}")
            page.wait_for_selector(".jp-Notebook", timeout=120_000)
            page.wait_for_function(  # the notebook's kernel is up
                "() => window.jupyterapp?.shell.currentWidget?.sessionContext?.session?.kernel"
                "?.status === 'idle'", timeout=120_000)
            # Not awaited on purpose: awaiting run-all's promise can hang.
            page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
            frame = page.locator(".widget-slider", has=page.locator(".widget-label", has_text="frame")
                                 ).filter(has_not_text="frames").first
            try:
                frame.wait_for(timeout=int(os.environ.get("VIDGEN_NB_BROWSER_TIMEOUT", "240")) * 1000)
            except Exception:
                page.screenshot(path=str(tmp / "lab_timeout.png"))
                if os.environ.get("VIDGEN_NB_SCREENSHOTS"):
                    shutil.copy(tmp / "lab_timeout.png", os.environ["VIDGEN_NB_SCREENSHOTS"])
                raise
            body = page.inner_text("body")
            assert "Error displaying widget" not in body and "Loading widget..." not in body

            picture = page.locator(".widget-image").first
            picture.scroll_into_view_if_needed()
            page.wait_for_function("() => document.querySelector('.widget-image')?.src")  # a blob: URL
            before_src, before_shot = picture.get_attribute("src"), picture.screenshot()
            page.screenshot(path=str(tmp / "lab_before.png"))

            frame.locator(".noUi-handle").focus()
            for _ in range(3):
                page.keyboard.press("ArrowRight")
            page.wait_for_function(
                "(old) => document.querySelector('.widget-image').src !== old", arg=before_src,
                timeout=30_000)
            time.sleep(0.5)  # let the last value land
            readout = frame.locator(".widget-readout").inner_text()
            assert int(readout) > 0
            after_shot = picture.screenshot()
            assert after_shot != before_shot
            page.screenshot(path=str(tmp / "lab_after.png"))
            if os.environ.get("VIDGEN_NB_SCREENSHOTS"):
                shutil.copy(tmp / "lab_after.png", os.environ["VIDGEN_NB_SCREENSHOTS"])
        finally:
            browser.close()
