"""Supervision of one llama-server process: start, health wait, output capture, restart after a crash, stop.

* The child listens on a free loopback port. It runs in its own process group, and on Linux it gets a parent-death
  signal (``prctl(PR_SET_PDEATHSIG, SIGKILL)``) so that it dies with heylook even when heylook is killed with
  SIGKILL. The child is started from the event loop's thread: the signal fires when the thread that forked it ends.
* Its output goes to heylook's log (logger ``heylook_llama_server.server``, prefixed with the model id), and the
  last lines are kept for error messages.
* After a crash it is started again with exponential backoff, at most ``max_restarts`` times within
  ``restart_window_s``; past that the model is reported failed until it is loaded again.
* ``stop`` sends SIGTERM to the process group, then SIGKILL after the grace period.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx

from heylook_core import ProviderError
from heylook_llama_server.ggml_build import describe_exit

logger = logging.getLogger(__name__)
output_logger = logging.getLogger("heylook_llama_server.server")

PR_SET_PDEATHSIG = 1
TAIL_LINES = 40


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _parent_death_signal(parent: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGKILL when its parent ends (Linux), or ``None`` elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


class Supervisor:
    """One supervised llama-server for one model."""

    def __init__(
        self,
        model_id: str,
        binary: Path,
        args: Sequence[str],
        *,
        startup_timeout_s: float,
        stop_grace_s: float,
        max_restarts: int,
        restart_window_s: float,
    ) -> None:
        self.model_id = model_id
        self.binary = binary
        self.args = list(args)
        self.startup_timeout_s = startup_timeout_s
        self.stop_grace_s = stop_grace_s
        self.max_restarts = max_restarts
        self.restart_window_s = restart_window_s
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.ready = asyncio.Event()
        self.failure: str | None = None  # set when it crashed more often than allowed
        self.last_exit: str | None = None  # "exit code N" of the last unexpected exit, with its output
        self.restarts: list[float] = []
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self._stopping = False
        self._monitor: asyncio.Task[None] | None = None
        self._exited: asyncio.Event = asyncio.Event()

    # -- starting ----------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the process and wait until it answers ``/health``; raise ``ProviderError`` with its log if not."""
        await self._spawn_and_wait()
        self._monitor = asyncio.create_task(self._watch(), name=f"llama-server-{self.model_id}")

    def _spawn(self) -> subprocess.Popen[bytes]:
        port = free_port()
        command = [str(self.binary), *self.args, "--host", "127.0.0.1", "--port", str(port)]
        logger.info("model '%s': starting %s", self.model_id, " ".join(command))
        self.tail.clear()
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_parent_death_signal(os.getpid()),  # noqa: PLW1509 - needed for PR_SET_PDEATHSIG
            close_fds=True,
        )
        self.process = process
        self.url = f"http://127.0.0.1:{port}"
        self._exited = asyncio.Event()
        loop = asyncio.get_running_loop()
        threading.Thread(
            target=self._pump_output,
            args=(process, loop, self._exited),
            name=f"llama-server-log-{process.pid}",
            daemon=True,
        ).start()
        return process

    def _pump_output(
        self, process: subprocess.Popen[bytes], loop: asyncio.AbstractEventLoop, exited: asyncio.Event
    ) -> None:
        """Copy the child's output into heylook's log (a thread: reading never waits on the event loop)."""
        assert process.stdout is not None
        prefix = f"[{self.model_id}] "
        for raw in process.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                self.tail.append(line)
                output_logger.info("%s%s", prefix, line)
        process.stdout.close()
        process.wait()
        with contextlib.suppress(RuntimeError):  # the loop is closed when heylook exits
            loop.call_soon_threadsafe(exited.set)

    def output(self, lines: int = 15) -> str:
        return "\n".join(list(self.tail)[-lines:])

    async def _spawn_and_wait(self) -> None:
        process = self._spawn()
        deadline = time.monotonic() + self.startup_timeout_s
        async with httpx.AsyncClient(timeout=2.0, trust_env=False) as client:
            while True:
                if process.poll() is not None:
                    await asyncio.wait_for(self._exited.wait(), 5)
                    raise ProviderError(
                        f"llama-server for model '{self.model_id}' exited with code {process.returncode} while "
                        f"starting; its last output:\n{self.output()}"
                    )
                try:
                    response = await client.get(self.url + "/health")
                    if response.status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    await self._terminate(process)
                    raise ProviderError(
                        f"llama-server for model '{self.model_id}' did not answer /health within "
                        f"{self.startup_timeout_s:g} s (startup_timeout_s); its last output:\n{self.output()}"
                    )
                await asyncio.sleep(0.05)
        logger.info("model '%s': llama-server pid %d ready at %s", self.model_id, process.pid, self.url)
        self.ready.set()

    # -- crashes -----------------------------------------------------------------------------------------------

    async def _watch(self) -> None:
        """Wait for the process to end; unless it was stopped, start it again (with backoff and a limit)."""
        while not self._stopping:
            process = self.process
            assert process is not None
            await self._exited.wait()
            if self._stopping:
                return
            self.ready.clear()
            self.last_exit = f"exit code {process.returncode}"
            now = time.monotonic()
            self.restarts = [t for t in self.restarts if now - t < self.restart_window_s]
            code = process.returncode
            why = f" ({describe_exit(code)}; 'heylookllm doctor' smoke-tests the binary)" if code < 0 else ""
            logger.error(
                "model '%s': llama-server pid %d exited with code %s%s; its last output:\n%s",
                self.model_id,
                process.pid,
                code,
                why,
                self.output(),
            )
            if len(self.restarts) >= self.max_restarts:
                self.failure = (
                    f"llama-server for model '{self.model_id}' crashed {len(self.restarts) + 1} times within "
                    f"{self.restart_window_s:g} s (last: {self.last_exit}); not restarting it. Unload or reload the "
                    f"model to try again. Its last output:\n{self.output()}"
                )
                logger.error("%s", self.failure)
                self.ready.set()  # wake waiters so that they see the failure
                return
            delay = min(0.25 * 2 ** len(self.restarts), 10.0)
            self.restarts.append(now)
            logger.warning("model '%s': restarting llama-server in %.2f s", self.model_id, delay)
            await asyncio.sleep(delay)
            try:
                await self._spawn_and_wait()
            except ProviderError as error:
                logger.error("%s", error.message)  # counted as another crash by the next turn of the loop

    async def wait_ready(self) -> str:
        """The URL of the running server, waiting while it restarts; raises ``ProviderError`` if it gave up."""
        if not self.ready.is_set():
            try:
                await asyncio.wait_for(self.ready.wait(), self.startup_timeout_s)
            except asyncio.TimeoutError:
                raise ProviderError(
                    f"llama-server for model '{self.model_id}' is not ready after {self.startup_timeout_s:g} s "
                    f"(restarting after {self.last_exit})"
                ) from None
        if self.failure:
            raise ProviderError(self.failure)
        if self._stopping:
            raise ProviderError(f"model '{self.model_id}' is being unloaded")
        return self.url

    async def exit_reason(self, url: str, wait: float = 1.0) -> str | None:
        """Why the process serving ``url`` is gone (waiting up to ``wait`` s to see it exit), or ``None``."""
        process = self.process
        if process is None or url != self.url:
            return self.last_exit or "it was restarted"
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._exited.wait()), wait)
        if process.poll() is None:
            return None
        return f"exit code {process.returncode}"

    # -- stopping ----------------------------------------------------------------------------------------------

    async def _terminate(self, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            deadline = time.monotonic() + self.stop_grace_s
            while process.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            if process.poll() is None:
                logger.warning(
                    "model '%s': llama-server pid %d ignored SIGTERM; killing it", self.model_id, process.pid
                )
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
        await asyncio.to_thread(process.wait)

    async def stop(self) -> None:
        self._stopping = True
        self.ready.set()
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
        if self.process is not None:
            pid = self.process.pid
            await self._terminate(self.process)
            logger.info(
                "model '%s': llama-server pid %d stopped (exit code %s)", self.model_id, pid, self.process.returncode
            )

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None and self.process.poll() is None else None
