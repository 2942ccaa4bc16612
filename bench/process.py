"""Processes under test: `python -m bot` and the baseline, each started with settings in its environment."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import aiohttp

__all__ = ["Served", "cpu_s", "free_port", "rss_mib"]

_START_DEADLINE_S = 30.0
_HEALTH_POLL_S = 0.005


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mib(pid: int) -> float:
    """Resident set size from /proc (Linux): what the platform bills and kills on."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used: with the machine shared, a figure's elapsed time may be
    other people's load; the CPU the bot itself burned is its own."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Served:
    """A server process on 127.0.0.1:`port`; `started_s` is process start to the first `/healthz` 200."""

    def __init__(self, argv: list[str], *, port: int, env: Mapping[str, str], cwd: Path, log: Path) -> None:
        self.argv = argv
        self.port = port
        self.env = dict(env)
        self.cwd = cwd
        self.log = log
        self.proc: asyncio.subprocess.Process | None = None
        self.started_s = 0.0
        self._log_file: IO[bytes] | None = None

    @classmethod
    def bot(cls, settings: Mapping[str, str], *, port: int, cwd: Path, log: Path) -> Served:
        """`python -m bot`, run from `cwd` so no `.env` of the repository leaks in."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "BK_", "BKJOB_"))}
        env.update(settings)
        # /metrics' internal listener on a free port: several bots run at once, beside whatever else is on 9464.
        env.update({"HOST": "127.0.0.1", "PORT": str(port), "METRICS_PORT": settings.get("METRICS_PORT", "0")})
        return cls([sys.executable, "-m", "bot"], port=port, env=env, cwd=cwd, log=log)

    @classmethod
    def baseline(cls, secret: str, *, port: int, cwd: Path, log: Path) -> Served:
        root = str(Path(__file__).resolve().parent.parent)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        return cls([sys.executable, "-m", "bench.baseline", str(port), secret], port=port, env=env, cwd=cwd, log=log)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def rss_mib(self) -> float:
        return rss_mib(self.pid)

    def cpu_s(self) -> float:
        return cpu_s(self.pid)

    async def idle(self, *, settle: float = 0.3, within: float = 120.0) -> None:
        """Until the process has used under 20 ms of CPU in `settle` seconds: the background work of what was sent
        before (replies after acks, message edits) is done and is not counted in what is measured next."""
        deadline = time.perf_counter() + within
        used = self.cpu_s()
        while time.perf_counter() < deadline:
            await asyncio.sleep(settle)
            now = self.cpu_s()
            if now - used < 0.02:
                return
            used = now

    async def start(self) -> float:
        self._log_file = self.log.open("ab")
        t0 = time.perf_counter()
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, env=self.env, cwd=self.cwd, stdout=self._log_file, stderr=self._log_file
        )
        deadline = t0 + _START_DEADLINE_S
        async with aiohttp.ClientSession() as http:
            while time.perf_counter() < deadline:
                if self.proc.returncode is not None:
                    raise RuntimeError(f"{self.argv} exited with {self.proc.returncode}; see {self.log}")
                try:
                    async with http.get(f"{self.url}/healthz") as resp:
                        if resp.status == 200:
                            self.started_s = time.perf_counter() - t0
                            return self.started_s
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(_HEALTH_POLL_S)
        await self.stop()
        raise RuntimeError(f"{self.argv} did not answer /healthz within {_START_DEADLINE_S} s; see {self.log}")

    async def stop(self) -> None:
        """SIGTERM, as the platform sends, then wait for the graceful shutdown (bounded)."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
                await asyncio.wait_for(self.proc.wait(), 5)
        self.proc = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
