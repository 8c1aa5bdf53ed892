"""`unrolled serve` as a child process on a free loopback port: what the tests and the load benchmark start.

The child's output goes to a temporary file, never a pipe: a pipe nobody reads
fills up and then blocks the server's event loop at its next log line.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from unrolled.serve.config import LOOPBACK

START_SECONDS = 120.0
STOP_SECONDS = 20.0


def free_port() -> int:
    """A TCP port free on the loopback address now."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


class Launched:
    """``unrolled serve RUNS FLAGS --port P`` started and answering ``GET /health`` (else a RuntimeError with what
    it printed); `stop` interrupts it as Ctrl-C would."""

    def __init__(self, runs: Sequence[str | Path], flags: Sequence[str] = (), *,
                 env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (closed by `stop`)
        command = [sys.executable, "-c", "import sys; from unrolled.cli import main; sys.exit(main())", "serve",
                   *map(str, runs), "--port", str(self.port), *flags]
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        try:
            self.wait()
        except BaseException:
            self.stop()
            raise

    def wait(self) -> None:
        deadline = time.monotonic() + START_SECONDS
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"unrolled serve ended at start-up: {self.output()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"unrolled serve did not answer /health in {START_SECONDS:g} s: {self.output()}")
            time.sleep(0.1)

    def output(self) -> str:
        """What the server has printed so far."""
        self.log.seek(0)
        return self.log.read().strip()

    def rss_mib(self) -> float:
        """The server's resident memory (Linux), MiB."""
        with open(f"/proc/{self.process.pid}/status", encoding="utf-8") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
