"""A real ``kinema serve`` process on a free loopback port, for the server tests (not a test module)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import warnings
from pathlib import Path

API_KEY = "test-key-0123456789"

warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"openai\..*")  # the SDK marks Sora deprecated


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """``python -m kinema.serve.cli`` with the given model and data folder; logs to ``data_dir/../server-N.log``."""

    def __init__(self, model_dir: Path, data_dir: Path, *args: str) -> None:
        self.model_dir, self.data_dir, self.args = model_dir, data_dir, args
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.log_path: Path | None = None
        self.starts = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 90.0) -> LiveServer:
        self.port = free_port()
        self.starts += 1
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}-server-{self.starts}.log"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        env.setdefault("KINEMA_C2PA_DIR", str(self.data_dir.parent / "c2pa"))  # signing keys out of the home folder
        cmd = [sys.executable, "-m", "kinema.serve.cli", "--port", str(self.port), "--model", str(self.model_dir),
               "--data-dir", str(self.data_dir), "--api-key", API_KEY, "--threads", "1", *self.args]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            health = self.health()
            if health is not None and health["worker_ready"]:
                return self
            time.sleep(0.1)
        raise TimeoutError(f"server not ready after {timeout}s:\n{self.log()}")

    def health(self) -> dict | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                return json.loads(r.read())
        except OSError:
            return None

    def client(self, **kwargs: object):  # -> openai.OpenAI
        from openai import OpenAI

        return OpenAI(base_url=self.base_url, api_key=str(kwargs.pop("api_key", API_KEY)), max_retries=int(kwargs.pop("max_retries", 0)), **kwargs)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:] if self.log_path and self.log_path.exists() else ""

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful stop (SIGTERM), as a service manager would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill9(self) -> int | None:
        """``kill -9`` the API process; returns the worker's pid (which must die with it)."""
        health = self.health() or {}
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        return health.get("worker_pid")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead too
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def wait_for(predicate, timeout: float, interval: float = 0.05):  # type: ignore[no-untyped-def]
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"condition not met within {timeout}s")
