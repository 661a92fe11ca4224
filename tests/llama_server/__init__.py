"""A real llama.cpp `llama-server` for the tests: built from the llama-cpp-python sdist by build.sh,
serving the designed GGUF of model.py on 127.0.0.1 at a port it picks itself."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections import deque
from pathlib import Path

BUILD_SCRIPT = Path(__file__).with_name("build.sh")
_LISTENING = re.compile(r"listening on (http://[\w.\-]+:\d+)")
_START_TIMEOUT_S = 120.0


def missing_build_tools() -> str | None:
    """Why llama-server cannot be built here, or None."""
    missing = [tool for tool in ("cmake", "make", "cc", "c++") if shutil.which(tool) is None]
    return f"building llama-server needs {' and '.join(missing)} (not on PATH)" if missing else None


def build_llama_server() -> Path:
    """The llama-server binary: build.sh's cached build, or a fresh one (minutes)."""
    environment = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, check=False, env=environment)
    if done.returncode != 0:
        raise RuntimeError(f"tests/llama_server/build.sh failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


class LlamaServer:
    """`llama-server -m MODEL --metrics --slots --reasoning-format deepseek` on 127.0.0.1:0.

    `slots`: `--parallel N`; None keeps the server's default (4 slots sharing one unified KV pool).
    """

    def __init__(self, binary: Path, model: Path, slots: int | None = None, *extra: str) -> None:
        self.args = [
            str(binary),
            "-m", str(model),
            "--host", "127.0.0.1",
            "--port", "0",
            "--metrics",
            "--slots",
            "--reasoning-format", "deepseek",
            "--threads", "1",
            "--no-webui",
            *(("--parallel", str(slots)) if slots is not None else ()),
            *extra,
        ]
        self.process: subprocess.Popen[str] | None = None
        self.url = ""
        self.log: deque[str] = deque(maxlen=400)

    def __enter__(self) -> LlamaServer:
        self.process = subprocess.Popen(
            self.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True
        )
        found = threading.Event()

        def read_log() -> None:
            assert self.process is not None and self.process.stdout is not None
            for line in self.process.stdout:
                self.log.append(line)
                match = _LISTENING.search(line)
                if match and not found.is_set():
                    self.url = match.group(1)
                    found.set()
            found.set()

        threading.Thread(target=read_log, daemon=True).start()
        deadline = time.monotonic() + _START_TIMEOUT_S
        if not found.wait(_START_TIMEOUT_S) or not self.url:
            self.__exit__()
            raise RuntimeError("llama-server did not start:\n" + "".join(self.log))
        while time.monotonic() < deadline:
            try:
                if self.get("/health").get("status") == "ok":
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        self.__exit__()
        raise RuntimeError("llama-server did not load the model:\n" + "".join(self.log))

    def __exit__(self, *exc_info: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def get(self, path: str) -> dict | list:
        with urllib.request.urlopen(self.url + path, timeout=10) as response:
            return json.loads(response.read())

    def get_text(self, path: str) -> str:
        with urllib.request.urlopen(self.url + path, timeout=10) as response:
            return response.read().decode()

    def post(self, path: str, body: dict) -> dict:
        request = urllib.request.Request(
            self.url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.loads(response.read())
