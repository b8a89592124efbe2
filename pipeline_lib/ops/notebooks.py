"""Running a notebook headless: papermill in a process of its own.

One place for it, used by the headless flow (:mod:`pipeline_lib.cli.flow`) and the
lab grader (:mod:`pipeline_lib.labs.grade`). The kernel inherits the environment it
is given, so configuration and secrets travel there and never as papermill
parameters (which papermill writes into the executed notebook).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from pipeline_lib.core.errors import PipelineError


class NotebookFailed(PipelineError):
    """A notebook failed or ran too long; the message names it and where its executed
    copy and log are."""


def papermill_command(
    source: Path, executed: Path, parameters: dict[str, Any], cwd: Path
) -> list[str]:
    """``python -m papermill SOURCE EXECUTED`` with ``parameters`` as YAML values."""
    command = [
        sys.executable,
        "-m",
        "papermill",
        str(source),
        str(executed),
        "--cwd",
        str(cwd),
        "--kernel",
        "python3",
        "--no-progress-bar",
        "--log-level",
        "WARNING",
    ]
    for key, value in parameters.items():
        command += ["-y", f"{key}: {value!r}" if isinstance(value, str) else f"{key}: {value}"]
    return command


def start_notebook(
    source: Path, executed: Path, parameters: dict[str, Any], env: dict[str, str]
) -> subprocess.Popen:
    """Start papermill on ``source``, in a process group of its own (its kernel, and
    whatever the notebook starts, can be stopped with it); its output goes to
    ``<executed>.log``."""
    with open(executed.with_suffix(".log"), "w") as log:  # the child holds its own copy
        return subprocess.Popen(
            papermill_command(source, executed, parameters, source.parent),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def wait_notebook(process: subprocess.Popen, executed: Path, timeout: float) -> None:
    """Wait for a notebook started by :func:`start_notebook`; raise
    :class:`NotebookFailed` when it failed (with its log's tail) or ran past ``timeout``
    seconds (then it is stopped with its whole process group: the kernel and what the
    notebook started)."""
    name = executed.stem
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise NotebookFailed(f"{name} ran past {timeout:.0f}s and was stopped") from None
    if process.returncode != 0:
        log = executed.with_suffix(".log").read_text(errors="replace")[-3000:]
        raise NotebookFailed(
            f"notebook {name} failed (exit {process.returncode}); executed copy: {executed}\n{log}"
        )
