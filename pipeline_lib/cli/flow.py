"""The whole flow headless: the notebooks run by papermill, then exported to HTML.

Order: setup; then producer and consumer **at the same time** (two papermill
processes, like two people in a classroom); then analysis; then, on a local cluster
of three brokers, the fault-tolerance drill. Executed notebooks and
their HTML land in ``output/<timestamp>/`` (git-ignored). The kernels inherit this
process's environment, so configuration and secrets come from there and never from
papermill parameters.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pipeline_lib.core.config import PROJECT_ROOT, Settings
from pipeline_lib.local.process import Notify
from pipeline_lib.local.secure import recorded_secure
from pipeline_lib.ops.notebooks import NotebookFailed, start_notebook, wait_notebook

NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"
OUTPUT_DIR = PROJECT_ROOT / "output"
NOTEBOOKS = ("01_setup", "02_producer", "03_consumer", "04_analysis")
FAULT_TOLERANCE = "05_fault_tolerance"  # needs the three-broker cluster: run on its own
SECURITY = "06_security"  # needs a home made by `up --secure`
SCHEMA = "07_schema_evolution"
INSTRUCTOR = "08_instructor"  # needs a class (`class add`) on a secure home


class FlowFailed(NotebookFailed):
    """A notebook of the flow failed; the message names it and where its executed copy is."""


@dataclass
class FlowResult:
    output_dir: Path
    notebooks: dict[str, Path] = field(default_factory=dict)
    html: dict[str, Path] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    total_seconds: float = 0.0

    def summary(self) -> str:
        lines = [
            f"headless flow finished in {self.total_seconds:.0f}s; outputs in {self.output_dir}"
        ]
        for name, path in self.notebooks.items():
            seconds = self.seconds.get(name)
            took = f" ({seconds:.0f}s)" if seconds is not None else ""
            lines.append(f"  {name}{took}: {path.name}, {self.html[name].name}")
        return "\n".join(lines)


def _start(name: str, out_dir: Path, parameters: dict[str, Any], env: dict) -> subprocess.Popen:
    return start_notebook(
        NOTEBOOKS_DIR / f"{name}.ipynb", out_dir / f"{name}.ipynb", parameters, env
    )


def _wait(name: str, process: subprocess.Popen, out_dir: Path, timeout: float) -> None:
    try:
        wait_notebook(process, out_dir / f"{name}.ipynb", timeout)
    except NotebookFailed as error:
        raise FlowFailed(str(error)) from None


TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"


def export_html(notebook: Path) -> Path:
    """HTML next to the executed notebook, readable without Jupyter and offline: the
    ``offline`` template (JupyterLab's, minus every script from a CDN)."""
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="offline", extra_template_basedirs=[str(TEMPLATES_DIR)])
    body, _ = exporter.from_notebook_node(nbformat.read(notebook, as_version=4))
    target = notebook.with_suffix(".html")
    target.write_text(body, encoding="utf-8")
    return target


def run_notebook(
    name: str,
    settings: Settings,
    parameters: dict[str, Any] | None = None,
    output_dir: Path | None = None,
    timeout: float = 600.0,
) -> tuple[Path, Path]:
    """Run one notebook headless on ``settings``; its executed copy and HTML export."""
    out_dir = (output_dir or OUTPUT_DIR / datetime.now().strftime("%Y%m%d-%H%M%S")).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **settings.to_env(), "PYTHONUNBUFFERED": "1"}
    _wait(name, _start(name, out_dir, parameters or {}, env), out_dir, timeout)
    notebook = out_dir / f"{name}.ipynb"
    return notebook, export_html(notebook)


def run_flow(
    settings: Settings,
    records: int = 20_000,
    seed: int = 42,
    output_dir: Path | None = None,
    notify: Notify | None = None,
    timeout: float = 600.0,
    start: str = "",
    lessons: bool = False,
) -> FlowResult:
    """Run the notebooks headless on ``settings`` (the fault drill and the security
    lesson where the home allows); raise FlowFailed on any error.

    The producer streams ``records`` simulated ticks and the news published among
    them (seed ``seed``, first event time ``start``, ISO 8601, "" for now). With
    ``lessons``, notebook 03 also runs its crash drills and notebook 07 its schema
    lesson (about a minute more): the demo a newcomer sees first leaves them out, the
    tests run them all."""
    notify = notify or (lambda message: None)
    out_dir = (output_dir or OUTPUT_DIR / datetime.now().strftime("%Y%m%d-%H%M%S")).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **settings.to_env(), "PYTHONUNBUFFERED": "1"}
    result = FlowResult(out_dir)
    flow_started = time.monotonic()

    def run_one(name: str, parameters: dict[str, Any]) -> None:
        started = time.monotonic()
        _wait(name, _start(name, out_dir, parameters, env), out_dir, timeout)
        result.seconds[name] = time.monotonic() - started

    notify("flow: 01_setup (services, topic, bucket, table)")
    run_one("01_setup", {"start_local_services": "local" in settings.targets.values()})

    notify(f"flow: 02_producer and 03_consumer together ({records:,} simulated ticks and news)")
    started = time.monotonic()
    consumer = _start(
        "03_consumer",
        out_dir,
        {
            "max_records": records,
            "until_idle_s": 30.0,
            "duration_s": timeout,
            "crash_drill": lessons,
        },
        env,
    )
    producer = _start(
        "02_producer",
        out_dir,
        {"source": "simulator", "max_records": records, "seed": seed, "start": start},
        env,
    )
    try:
        _wait("02_producer", producer, out_dir, timeout)
        result.seconds["02_producer"] = time.monotonic() - started
        _wait("03_consumer", consumer, out_dir, timeout)
        result.seconds["03_consumer"] = time.monotonic() - started  # both started together
    finally:
        for process in (producer, consumer):
            if process.poll() is None:
                process.kill()

    notify("flow: 04_analysis (BigQuery queries and figures)")
    run_one("04_analysis", {"live": False})
    names = list(NOTEBOOKS)
    if lessons:
        notify("flow: 07_schema_evolution (a producer one contract version ahead)")
        run_one(SCHEMA, {})
        names.append(SCHEMA)
    if settings.is_local and settings.brokers >= 3:
        notify("flow: 05_fault_tolerance (a broker killed mid-stream, and restarted)")
        run_one(FAULT_TOLERANCE, {})
        names.append(FAULT_TOLERANCE)
    if settings.is_local and recorded_secure(settings.home):
        notify("flow: 06_security (who connects, over what, and the broker's refusals)")
        run_one(SECURITY, {})
        names.append(SECURITY)

    for name in names:
        result.notebooks[name] = out_dir / f"{name}.ipynb"
        result.html[name] = export_html(result.notebooks[name])
    result.total_seconds = time.monotonic() - flow_started
    return result
