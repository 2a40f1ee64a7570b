"""Run the CLI as a child process and watch its output as it streams (for crash tests)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def cli_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "waluigi_desk", *args]


class Streamed:
    """A child process whose stdout bytes are recorded with the time each chunk arrived."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None):
        e = dict(os.environ)
        e["PYTHONWARNINGS"] = "ignore"
        e.update(env or {})
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=e, cwd=REPO)
        self.chunks: list[tuple[float, bytes]] = []
        self.first = threading.Event()
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self) -> None:
        fd = self.proc.stdout.fileno()
        while True:
            try:
                b = os.read(fd, 4096)
            except OSError:
                return
            if not b:
                return
            self.chunks.append((time.monotonic(), b))
            self.first.set()

    def send(self, text: str) -> None:
        self.proc.stdin.write(text.encode("utf-8"))
        self.proc.stdin.flush()

    def printed(self, before: float | None = None) -> bytes:
        return b"".join(b for t, b in list(self.chunks) if before is None or t <= before)

    def kill(self) -> float:
        t = time.monotonic()
        self.proc.kill()
        self.proc.wait(timeout=10)
        return t

    def close(self) -> str:
        """Stop the process (if still running), join the reader and close every pipe; returns stderr."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._t.join(timeout=5)
        err = self.proc.stderr.read().decode("utf-8", "replace")
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except OSError:
                pass
        return err
