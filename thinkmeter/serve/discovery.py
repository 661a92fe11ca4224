"""How readers find `thinkmeter serve` for a data dir: <data_dir>/serve.json.

serve writes {"host": ..., "port": ..., "pid": ...} once its HTTP interface listens and removes the
file when it exits. A file whose pid is gone (serve was killed) is ignored. The password, if any, is
never written here: readers take it from THINKMETER_SERVE_PASSWORD.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from thinkmeter.published import write_atomically

FILE_NAME = "serve.json"
PASSWORD_ENV = "THINKMETER_SERVE_PASSWORD"


@dataclass(frozen=True)
class ServeAddress:
    host: str
    port: int
    pid: int

    @property
    def connect_host(self) -> str:
        """Where a local reader connects: loopback when serve listens on every interface."""
        return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)

    @property
    def url(self) -> str:
        host = self.connect_host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"


def advertise(data_dir: Path, address: ServeAddress) -> None:
    """Publish the address atomically (readers never see half a file)."""
    write_atomically(data_dir / FILE_NAME, json.dumps({"host": address.host, "port": address.port, "pid": address.pid}).encode())


def withdraw(data_dir: Path, pid: int) -> None:
    """Remove the file if it is still ours."""
    found = _read(data_dir)
    if found is not None and found.pid == pid:
        with contextlib.suppress(FileNotFoundError):
            (data_dir / FILE_NAME).unlink()


def find_serve(data_dir: Path) -> ServeAddress | None:
    """The serve running for data_dir, or None."""
    found = _read(data_dir)
    if found is None or not _alive(found.pid):
        return None
    return found


def _read(data_dir: Path) -> ServeAddress | None:
    try:
        document = json.loads((data_dir / FILE_NAME).read_text())
        return ServeAddress(str(document["host"]), int(document["port"]), int(document["pid"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True
