"""Real HTTP servers for tests: uvicorn in a thread, or ``mbom serve`` in a subprocess."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI

STARTUP_TIMEOUT = 60.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_healthy(base_url: str, *, timeout: float = STARTUP_TIMEOUT,
                       alive: threading.Thread | subprocess.Popen[bytes] | None = None) -> None:
    """Poll ``/healthz`` until it answers 200; fail if ``alive`` dies first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if isinstance(alive, threading.Thread) and not alive.is_alive():
            raise RuntimeError(f"the server thread for {base_url} died during start-up")
        if isinstance(alive, subprocess.Popen) and alive.poll() is not None:
            raise RuntimeError(f"the server at {base_url} exited with {alive.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base_url}/healthz", timeout=2.0).status_code == 200:
                return
        time.sleep(0.05)
    raise TimeoutError(f"{base_url}/healthz did not answer within {timeout:.0f} s")


class _KeepRecords(logging.Filter):
    """Keeps the server's log records, unformatted, and stops them there.

    Formatting a traceback parses source with ``ast`` (Python 3.11 carets); doing
    that in the server thread while pytest formats a failure in the main thread
    trips CPython's "AST constructor recursion depth mismatch" (gh-106905). A
    logger filter runs before any handler, pytest's capture handlers included.
    """

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        self.records.append(record)
        return False


@contextlib.contextmanager
def _quiet_server_log() -> Iterator[_KeepRecords]:
    logger = logging.getLogger("uvicorn.error")
    keeper = _KeepRecords()
    logger.addFilter(keeper)
    try:
        yield keeper
    finally:
        logger.removeFilter(keeper)


@contextlib.contextmanager
def serve_in_thread(app: FastAPI) -> Iterator[str]:
    """Run ``app`` under uvicorn on a free port in a thread; yield its base URL.

    The listening socket is bound before the thread starts, so no other process
    can take the port in between. The server's log is kept, not printed.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            log_config=None, lifespan="off", ws="none")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    base_url = f"http://127.0.0.1:{port}"
    with _quiet_server_log():
        thread.start()
        try:
            wait_until_healthy(base_url, alive=thread)
            yield base_url
        finally:
            server.should_exit = True
            thread.join(timeout=15)
            sock.close()


@contextlib.contextmanager
def serve_in_subprocess(mbom: Path, env: Mapping[str, str], log: Path) -> Iterator[str]:
    """Run ``mbom serve --port P`` with ``env``; yield its base URL; stop it after."""
    port = free_port()
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(mbom), "serve", "--port", str(port)],
            env={**os.environ, **env}, stdout=sink, stderr=subprocess.STDOUT,
        )
        base_url = f"http://127.0.0.1:{port}"
        try:
            wait_until_healthy(base_url, alive=process)
            yield base_url
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)
