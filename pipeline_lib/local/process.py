"""Start, find, wait for and stop one local server process.

Every local service (Kafka broker, GCS emulator, BigQuery emulator) is a child
process detached into its own session, with a folder holding its data, its log and
a small JSON state file (pid and ports). A second ``up`` finds the state file, sees
the process alive and its ports answering, and reuses it instead of starting twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pipeline_lib.core.config import LOCAL_HOST
from pipeline_lib.core.errors import PipelineError

Notify = Callable[[str], None]


class ServiceError(PipelineError):
    """A local service could not be started or stopped; the message says what to do."""


class PortInUseError(ServiceError):
    """A port the service needs is held by a program this package did not start."""


def port_open(port: int, host: str = LOCAL_HOST, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port.

    A port inside the kernel's ephemeral range (32768-60999 on Linux) that nobody
    listens on can be "opened" by the probe itself: the kernel may give the probe that
    very port as its source, and the connection meets itself (a TCP self-connect). The
    probe would then report the port taken, and hold it while the service tries to
    bind it. So the probe dials from another loopback address where it can, and a
    connection to itself counts as nothing listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        if host == LOCAL_HOST:
            with contextlib.suppress(OSError):  # not every system routes all of 127/8
                sock.bind(("127.0.0.2", 0))
        if sock.connect_ex((host, port)) != 0:
            return False
        return sock.getsockname() != sock.getpeername()


def pid_alive(pid: int) -> bool:
    """True when ``pid`` runs and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        with contextlib.suppress(OSError, IndexError):
            return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def _cmdline(pid: int) -> str | None:
    """The command line of ``pid`` where /proc exists (Linux), else None."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return None


def log_tail(path: Path, lines: int = 15) -> str:
    """Last lines of a log file, for error messages."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log yet)"
    return "\n".join(text[-lines:])


@dataclass
class ServiceStatus:
    """What ``status`` reports about one service."""

    name: str
    running: bool
    pid: int | None
    ports: dict[str, int]
    endpoint: str
    log: str
    data_dir: str
    detail: str = ""
    extra: dict[str, str] = field(default_factory=dict)


class LocalService(ABC):
    """A server process owned by this package, living in ``<home>/<name>/``."""

    name: str = "service"
    start_timeout: float = 60.0
    stop_timeout: float = 20.0

    def __init__(self, home: Path, notify: Notify | None = None) -> None:
        self.folder = home / self.name
        self.notify: Notify = notify or (lambda message: None)

    # --- what each service defines ------------------------------------------------

    @property
    @abstractmethod
    def ports(self) -> dict[str, int]:
        """Named ports the service listens on (all on 127.0.0.1)."""

    @property
    @abstractmethod
    def endpoint(self) -> str:
        """Address clients use, e.g. ``127.0.0.1:9092`` or ``http://127.0.0.1:4443``."""

    @abstractmethod
    def command(self) -> list[str]:
        """The argv that runs the server in the foreground."""

    @abstractmethod
    def is_ready(self) -> bool:
        """True once the server answers requests."""

    def prepare(self) -> None:  # noqa: B027 - optional hook
        """One-time work before the first start (downloads, formatting)."""

    def environment(self) -> dict[str, str]:
        """Environment of the server process."""
        return dict(os.environ)

    # --- shared machinery ---------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self.folder / "data"

    @property
    def log_path(self) -> Path:
        return self.folder / f"{self.name}.log"

    @property
    def state_path(self) -> Path:
        return self.folder / "state.json"

    def _read_state(self) -> dict | None:
        try:
            return json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return None

    def running_pid(self) -> int | None:
        """Pid of our server if it is alive, else None (stale state is removed)."""
        state = self._read_state()
        if not state:
            return None
        pid = int(state.get("pid", 0))
        cmdline = _cmdline(pid) if pid else None
        ours = pid and pid_alive(pid) and (cmdline is None or str(self.folder) in cmdline)
        if not ours:
            self.state_path.unlink(missing_ok=True)
            return None
        return pid

    def status(self) -> ServiceStatus:
        pid = self.running_pid()
        running = bool(pid) and self.is_ready()
        detail = "ready" if running else ("starting or unhealthy" if pid else "stopped")
        return ServiceStatus(
            name=self.name,
            running=running,
            pid=pid,
            ports=self.ports,
            endpoint=self.endpoint,
            log=str(self.log_path),
            data_dir=str(self.data_dir),
            detail=detail,
        )

    def up(self) -> ServiceStatus:
        """Start the server, or reuse it when it already runs. Idempotent."""
        pid = self.running_pid()
        if pid:
            self._wait_ready(pid)
            self.notify(f"{self.name}: already running (pid {pid}), reusing it")
            return self.status()
        taken = {label: port for label, port in self.ports.items() if port_open(port)}
        if taken:
            listing = ", ".join(f"{LOCAL_HOST}:{p} ({label})" for label, p in taken.items())
            raise PortInUseError(
                f"{self.name}: {listing} already in use by a program pipeline_lib did not "
                f"start. Stop that program, or choose other ports in the environment "
                f"(see .env.example), then run `python -m pipeline_lib up` again."
            )
        self.folder.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.prepare()
        if self.log_path.exists():
            self.log_path.replace(self.log_path.with_suffix(".log.1"))
        self.notify(f"{self.name}: starting on {self.endpoint} (log: {self.log_path})")
        with open(self.log_path, "wb") as log:
            process = subprocess.Popen(
                self.command(),
                cwd=self.folder,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.environment(),
                start_new_session=True,
            )
        self.state_path.write_text(json.dumps({"pid": process.pid, "ports": self.ports}))
        try:
            self._wait_ready(process.pid, process)
        except ServiceError:
            self.down()
            raise
        self.notify(f"{self.name}: ready on {self.endpoint}")
        return self.status()

    def _wait_ready(self, pid: int, process: subprocess.Popen | None = None) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise ServiceError(
                    f"{self.name} exited with code {process.returncode} while starting. "
                    f"Last lines of {self.log_path}:\n{log_tail(self.log_path)}"
                )
            if process is None and not pid_alive(pid):
                raise ServiceError(f"{self.name} (pid {pid}) died; see {self.log_path}")
            if self.is_ready():
                return
            time.sleep(0.25)
        raise ServiceError(
            f"{self.name} did not become ready within {self.start_timeout:.0f}s. "
            f"Check {self.log_path}; last lines:\n{log_tail(self.log_path)}"
        )

    def down(self, timeout: float | None = None, kill: bool = False) -> bool:
        """Stop the server (SIGTERM, then SIGKILL; ``kill``: SIGKILL at once, as a crash
        would). True if something was stopped."""
        pid = self.running_pid()
        if not pid:
            return False
        self.notify(f"{self.name}: {'killing' if kill else 'stopping'} pid {pid}")
        _signal_group(pid, signal.SIGKILL if kill else signal.SIGTERM)
        deadline = time.monotonic() + (self.stop_timeout if timeout is None else timeout)
        while time.monotonic() < deadline and pid_alive(pid):
            time.sleep(0.1)
        if pid_alive(pid):
            _signal_group(pid, signal.SIGKILL)
            while pid_alive(pid):
                time.sleep(0.05)
        # A process whose main thread is gone can still hold its sockets for a moment
        # while its other threads exit: return only once the ports are free again.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(port_open(p) for p in self.ports.values()):
            time.sleep(0.05)
        self.state_path.unlink(missing_ok=True)
        return True


def _signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal the process group the server leads (it may have children), else the pid."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
