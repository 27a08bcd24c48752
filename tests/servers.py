"""Real servers for loopback tests, on 127.0.0.1 and a free port, ready before the test goes on:
llama-cpp-python's server on the builtin GGUF (a process, stopped by PID), or an app served in a
thread of the test process (stopped with the block)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

SERVER_START_SECONDS = 90
STOP_SECONDS = 15


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_llama_server(log_path):
    """llama_cpp.server on 127.0.0.1 and a free port, as `serve --engine llama.cpp` starts it: (process, url), ready."""
    pytest.importorskip("llama_cpp.server.app", reason="needs llama-cpp-python's server extra (fastapi, uvicorn, …)")
    from harness.models import gguf_origin

    port = free_port()
    # flash attention: the attention kernel llama.cpp's default context (LlamaCppEngine's) uses on a CPU.
    # One thread: on a shared 2-core machine llama.cpp's spinning threads made two 5x slower (measured).
    command = [sys.executable, "-m", "engines.llama_server", "--model", str(gguf_origin("smollm2-135m-instruct")), "--host", "127.0.0.1",
               "--port", str(port), "--n_ctx", "2048", "--n_threads", "1", "--flash_attn", "true",
               # llama-cpp-python's server cancels a running stream when a new request arrives unless told not to.
               "--interrupt_requests", "false"]
    with open(log_path, "wb") as log:  # the server keeps its own copy of the descriptor
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    wait_until_ready(process, f"{url}/models", SERVER_START_SECONDS, lambda: log_path.read_text()[-500:])
    return process, url


def wait_until_ready(process, probe_url: str, seconds: float, output) -> None:
    """Poll `probe_url` until it answers 200; fail with the server's last `output()` if it exits or times out."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited with {process.returncode}: {output()}")
        try:
            if httpx.get(probe_url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    stop_server(process)
    pytest.fail(f"server not ready at {probe_url} after {seconds} s: {output()}")


def start_serve(args: list[str], env: dict | None = None, probe: str = "/health") -> tuple[subprocess.Popen, str]:
    """`domainbench serve ARGS` (this checkout's) on 127.0.0.1 and a free port: (process, base url), ready."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "cli", "serve", *args, "--port", str(port)],
                               env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    url = f"http://127.0.0.1:{port}"
    wait_until_ready(process, f"{url}{probe}", SERVER_START_SECONDS, lambda: process.stderr.read()[-2000:])
    return process, url


def stop_serve(process: subprocess.Popen) -> int:
    """SIGTERM by PID and its exit code; SIGKILL (and a failure) if it has not exited after STOP_SECONDS."""
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise


def stop_server(process):
    """SIGTERM, then SIGKILL after 5 s: by PID, only the process this test started."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()


@contextlib.contextmanager
def app_in_thread(app, seconds: float = 30.0):
    """An ASGI app served by uvicorn in a thread of this process on 127.0.0.1 and a free port: its /v1 url.

    For fast tests of the endpoint path on the tiny model; stopped (should_exit, join) when the block ends.
    """
    import threading

    import uvicorn

    from serve.process import uvicorn_config

    port = free_port()
    server = uvicorn.Server(uvicorn_config(app, host="127.0.0.1", port=port))
    thread = threading.Thread(target=server.run, daemon=True, name="test-server")
    thread.start()
    deadline = time.monotonic() + seconds
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        if not server.started:
            pytest.fail(f"in-thread server not started on port {port} after {seconds} s")
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=seconds)
