"""A real JupyterLab and a real browser (Debian's Chromium driven by Playwright).

JupyterLab serves a temporary copy of ``notebooks/`` (so autosave never writes
outputs into the committed notebooks), with the test services' settings in its
environment, which every kernel inherits. Screenshots go to ``output/browser/`` to
be looked at.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from pipeline_lib.core.config import Settings
from pipeline_lib.kafka_io.consumer import SinkConsumer
from pipeline_lib.kafka_io.producer import produce
from pipeline_lib.local.process import port_open
from pipeline_lib.records.news import make_news_id, scored
from tests.browser.pages import FIRST_TICKS, SEED
from tests.conftest import REPO
from tests.helpers import produce_ticks, simulated

CHROMIUM = "/usr/bin/chromium"
LAB_PORT = 18888
# Quiet, offline Chromium: without these it keeps trying to reach Google's services.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def landed(services: Settings) -> Settings:
    """Settings with their own names, and a first part of a simulator run landed."""
    from tests.conftest import own_names

    settings = own_names(services)
    ticks = simulated(FIRST_TICKS, seed=SEED)
    produce_ticks(settings, ticks)
    SinkConsumer(settings).run(until_idle=2)
    # Two stories about the first symbol shown, inside the run, to see the markers.
    tag = ticks[0].event_id.split(":")[0]
    stories = [
        scored(
            make_news_id(tag, "AAPL", headline), "AAPL", ticks[0].ts + delay, headline, "simulator"
        )
        for delay, headline in (
            (timedelta(seconds=30), "Apple beats estimates and raises guidance"),
            (timedelta(seconds=70), "Apple shares plunge after weak outlook"),
        )
    ]
    produce(settings, stories)
    SinkConsumer(settings, stream="news").run(until_idle=2)
    return settings


def _notebook_copy(folder: Path) -> None:
    """The committed notebooks, with 04_analysis's parameters set for the live widget,
    and the labs released into ``labs/`` as a teacher hands them out."""
    from pipeline_lib.labs.release import release

    for path in (REPO / "notebooks").glob("*.ipynb"):
        shutil.copy(path, folder / path.name)
    release(folder / "labs")
    analysis = folder / "04_analysis.ipynb"
    notebook = json.loads(analysis.read_text())
    for cell in notebook["cells"]:
        if "parameters" in cell["metadata"].get("tags", []):
            source = "".join(cell["source"])
            source = source.replace("live: bool = False", "live: bool = True")
            source = source.replace("window_minutes: int = 60", "window_minutes: int = 390")
            source = source.replace("refresh_s: float = 5.0", "refresh_s: float = 1.0")
            assert "live: bool = True" in source
            cell["source"] = source
    analysis.write_text(json.dumps(notebook))


@pytest.fixture(scope="session")
def lab(landed: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """JupyterLab on 127.0.0.1, no token; its URL."""
    if port_open(LAB_PORT):
        pytest.fail(f"port {LAB_PORT} is taken: stop the program on it and run again")
    root = tmp_path_factory.mktemp("lab")
    (root / "notebooks").mkdir()
    _notebook_copy(root / "notebooks")
    jupyter = {
        "JUPYTER_CONFIG_DIR": str(root / "config"),
        "JUPYTER_RUNTIME_DIR": str(root / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(root / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(root / "workspaces"),
    }
    # No "get Jupyter news?" toast over the screenshots (and no fetch from the internet).
    notification = root / "settings" / "@jupyterlab" / "apputils-extension"
    notification.mkdir(parents=True)
    (notification / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    # Every cell rendered, as on a short notebook: the tests find cells by their text.
    notebook_settings = root / "settings" / "@jupyterlab" / "notebook-extension"
    notebook_settings.mkdir(parents=True)
    (notebook_settings / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
    env = {**os.environ, **landed.to_env(), **jupyter}
    command = [
        sys.executable,
        "-m",
        "jupyter",
        "lab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={LAB_PORT}",
        "--IdentityProvider.token=",
        "--ServerApp.password=",
        f"--ServerApp.root_dir={root / 'notebooks'}",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    if os.geteuid() == 0:
        command.append("--allow-root")
    log = open(root / "lab.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{LAB_PORT}"
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(f"{url}/api/status", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            pytest.fail(f"JupyterLab did not start:\n{(root / 'lab.log').read_text()[-3000:]}")
        time.sleep(0.5)
    yield url
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
    log.close()


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """Debian's Chromium, headless, driven by Playwright (never a downloaded browser)."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():  # CI runs as root: `make test` installs it first
        pytest.skip(f"no {CHROMIUM}: `sudo apt-get install chromium` enables the browser tier")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
