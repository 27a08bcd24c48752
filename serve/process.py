"""`domainbench serve` as a process: its listening socket, the exposure warning, and draining on SIGTERM.

    sock = listening_socket("127.0.0.1", 8000)     # a bad or busy port is one line, before the model loads
    serve(served_from_spec("smollm2-135m-instruct"), sock, api_key=None)
"""

from __future__ import annotations

import ipaddress
import signal
import socket
import sys
import threading
from contextlib import contextmanager

import uvicorn

from harness.errors import DomainbenchError
from serve.api import create_app
from serve.model import ServedModel
from serve.traces import TraceStore

# After generation stops at the drain deadline: time for the requests it stopped to be answered (503).
_ANSWER_STOPPED_SECONDS = 5
_LOOPBACK_NAMES = ("localhost", "ip6-localhost")


def listening_socket(host: str, port: int) -> socket.socket:
    """The server's socket, bound and listening before the model loads: a bad or busy port is one line."""
    if not 0 <= port <= 65535:
        raise DomainbenchError(f"serve --port {port}: not a port number (0..65535)")
    try:
        family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise DomainbenchError(f"serve --host {host}: cannot resolve it ({exc.strerror})") from None
    sock = socket.socket(family, kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: a restart need not wait
    try:
        sock.bind(address)
        sock.listen()  # listening, so that no other server can bind the port while the model loads
    except OSError as exc:
        sock.close()
        raise DomainbenchError(f"serve: cannot listen on {host}:{port} ({exc.strerror})") from None
    return sock


def exposure_warning(host: str, api_key: str | None) -> str | None:
    """A warning when the server is reachable beyond this machine and anyone reaching it may use it."""
    if api_key:
        return None
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        if host in _LOOPBACK_NAMES:
            return None
    return (f"warning: serving on {host} without an API key: anyone who reaches this port can use the model "
            "(set --api-key or DOMAINBENCH_API_KEY)")


def uvicorn_config(app, **settings) -> uvicorn.Config:
    """uvicorn's settings for our app, leaving the process's logging as it is.

    uvicorn's default `log_config` runs `logging.config.dictConfig`, which closes every handler the
    process already has — absl's (imported by rouge-score) closes sys.stderr with it, after which
    nothing can report an error. Without it, uvicorn's warnings reach stderr through logging's
    last-resort handler.
    """
    return uvicorn.Config(app, log_config=None, log_level="warning", **settings)


def serve(served: ServedModel, sock: socket.socket, *, api_key: str | None = None,
          traces: TraceStore | None = None) -> None:
    """Run the server on `sock` (listening_socket's) until SIGINT/SIGTERM, then drain and return.

    Draining: no new connections; open requests have `served.limits.drain_seconds` to finish, then
    generation stops and what is left is answered 503; the port is released, the trace store closed.
    """
    drain_seconds = served.limits.drain_seconds
    config = uvicorn_config(create_app(served, api_key=api_key, traces=traces),
                            timeout_graceful_shutdown=drain_seconds + _ANSWER_STOPPED_SECONDS)
    try:
        DrainingServer(config, served).run(sockets=[sock])
    finally:
        served.stop_generating()
        sock.close()
        if traces is not None:
            traces.close()


class DrainingServer(uvicorn.Server):
    """uvicorn's server, which on SIGINT/SIGTERM gives open requests the drain time, then stops generation."""

    def __init__(self, config: uvicorn.Config, served: ServedModel):
        super().__init__(config)
        self.served, self.drain_seconds = served, served.limits.drain_seconds
        self._deadline: threading.Timer | None = None

    def handle_exit(self, sig: int, frame) -> None:
        if self._deadline is None:
            sys.stderr.write(f"stopping: open requests have {self.drain_seconds:g} s to finish\n")
            self._deadline = threading.Timer(self.drain_seconds, self.served.stop_generating)
            self._deadline.daemon = True
            self._deadline.start()
        super().handle_exit(sig, frame)

    @contextmanager
    def capture_signals(self):
        # uvicorn (0.29+) raises the signal again after its graceful shutdown, so a SIGTERM'd
        # server would die of it (exit 143); a clean stop on request is exit 0.
        if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
