"""A real JupyterLab in a real browser: every notebook that holds a widget, run whole.

For each: no cell ends in an error, no widget fails to display, and one control moved
by the keyboard changes the picture it drives (the training dashboard and the study's
progress bars have no control: they must show progress instead).

Needs Debian's ``chromium`` on PATH and the ``playwright`` package (no downloaded
browser). Without them the test skips, unless ``$VIDGEN_NB_REQUIRE_BROWSER`` is set
(``.ci/run`` sets it), in which case it fails.
"""

import json
import os
import re
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
# notebook -> the label of the slider to move (None: no control, progress to see instead)
WIDGET_NOTEBOOKS = {
    "02_vae.ipynb": "z[0]",
    "04_synthetic_video.ipynb": "frame",
    "05_weight_predictor.ipynb": "delta scale",
    "06_training.ipynb": None,
    "08_experiments.ipynb": None,
}
PROGRESS = {"06_training.ipynb": r"step \d+: critic", "08_experiments.ipynb": r"study\stmp\w+:\s100%"}  # tqdm: figure spaces
REQUIRED = bool(os.environ.get("VIDGEN_NB_REQUIRE_BROWSER"))
TIMEOUT_MS = int(os.environ.get("VIDGEN_NB_BROWSER_TIMEOUT", "300")) * 1000


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


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab on 127.0.0.1 over a copy of the notebooks; yields (url, token, tmp)."""
    reason = _missing()
    if reason:
        if REQUIRED:
            pytest.fail(f"browser test required but {reason}")
        pytest.skip(reason)
    tmp_path = tmp_path_factory.mktemp("lab")
    work = tmp_path / "work"
    (work / "notebooks").mkdir(parents=True)
    for name in WIDGET_NOTEBOOKS:
        shutil.copy(ROOT / "notebooks" / name, work / "notebooks" / name)
    shutil.copytree(ROOT / "docs" / "results", work / "docs" / "results")  # 08 reads the study
    settings = tmp_path / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    notebook_settings = tmp_path / "settings" / "@jupyterlab" / "notebook-extension"
    notebook_settings.mkdir(parents=True)  # every cell in the page, not only those in view
    (notebook_settings / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
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


@pytest.fixture(scope="module")
def browser(lab):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=shutil.which("chromium"),
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                  "--disable-background-networking", "--disable-component-update",
                  "--no-first-run", "--disable-sync"])
        try:
            yield chromium
        finally:
            chromium.close()


# Every code cell of the open notebook has run (an execution count, kernel idle).
ALL_RAN = """() => {
  const panel = window.jupyterapp?.shell.currentWidget;
  if (!panel?.content?.widgets || panel.sessionContext?.session?.kernel?.status !== 'idle') return false;
  return panel.content.widgets.every(c => c.model.type !== 'code' || c.model.executionCount !== null);
}"""
# The error outputs of the open notebook's cells, as "ename: evalue".
ERRORS = """() => window.jupyterapp.shell.currentWidget.content.widgets
  .filter(c => c.model.type === 'code')
  .flatMap(c => c.model.outputs.toJSON())
  .filter(o => o.output_type === 'error').map(o => `${o.ename}: ${o.evalue}`)"""


def _shot(page, tmp, name):
    page.screenshot(path=str(tmp / name))
    if os.environ.get("VIDGEN_NB_SCREENSHOTS"):
        shutil.copy(tmp / name, os.environ["VIDGEN_NB_SCREENSHOTS"])


@pytest.mark.parametrize("notebook", list(WIDGET_NOTEBOOKS))
def test_widget_notebook_runs_in_jupyterlab(lab, browser, notebook):
    url, token, tmp = lab
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        # A workspace of its own, reset: the notebooks opened before stay closed.
        workspace = notebook.split("_")[0]
        page.goto(f"{url}/lab/workspaces/nb{workspace}/tree/notebooks/{notebook}?reset&token={token}")
        page.wait_for_selector(".jp-Notebook", timeout=120_000)
        page.wait_for_function(  # the notebook's kernel is up
            "() => window.jupyterapp?.shell.currentWidget?.sessionContext?.session?.kernel"
            "?.status === 'idle'", timeout=120_000)
        # Not awaited on purpose: awaiting run-all's promise can hang.
        page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
        try:
            page.wait_for_function(ALL_RAN, timeout=TIMEOUT_MS, polling=1000)
        except Exception:
            _shot(page, tmp, f"timeout_{notebook}.png")
            raise
        assert page.evaluate(ERRORS) == []
        # textContent, not innerText: cells scrolled out of view are not rendered as text
        body = page.evaluate("() => document.body.textContent")
        assert "Error displaying widget" not in body and "Loading widget..." not in body
        label = WIDGET_NOTEBOOKS[notebook]
        if label is None:
            if not re.search(PROGRESS[notebook], body):
                (tmp / f"body_{notebook}.txt").write_text(body)
                _shot(page, tmp, f"no_progress_{notebook}.png")
                if os.environ.get("VIDGEN_NB_SCREENSHOTS"):
                    shutil.copy(tmp / f"body_{notebook}.txt", os.environ["VIDGEN_NB_SCREENSHOTS"])
                pytest.fail(f"no progress shown in {notebook}")
            return
        _move_slider(page, label)
        _shot(page, tmp, f"after_{notebook}.png")
    finally:
        page.close()
        _stop_kernels(url, token)  # one kernel at a time on a small machine


def _stop_kernels(url: str, token: str) -> None:
    """Delete every session (and its kernel) through JupyterLab's REST API."""
    with urllib.request.urlopen(f"{url}/api/sessions?token={token}", timeout=10) as answer:
        sessions = json.loads(answer.read())
    for session in sessions:
        request = urllib.request.Request(f"{url}/api/sessions/{session['id']}?token={token}",
                                         method="DELETE")
        urllib.request.urlopen(request, timeout=30).close()


def _move_slider(page, label: str) -> None:
    """Press ArrowRight three times on the slider named ``label``; a picture must change."""
    slider = page.locator(".widget-slider", has=page.locator(".widget-label", has_text=label))
    slider = slider.filter(has_not_text="frames").first if label == "frame" else slider.first
    slider.scroll_into_view_if_needed()
    page.wait_for_function("() => document.querySelector('.widget-image')?.src")  # a blob: URL
    before = page.evaluate("() => [...document.querySelectorAll('.widget-image')].map(i => i.src)")
    readout = slider.locator(".widget-readout").inner_text()
    slider.locator(".noUi-handle").focus()
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    page.wait_for_function(
        "(old) => [...document.querySelectorAll('.widget-image')].some((img, k) => img.src !== old[k])",
        arg=before, timeout=30_000)
    time.sleep(0.5)  # let the last value land
    assert slider.locator(".widget-readout").inner_text() != readout
