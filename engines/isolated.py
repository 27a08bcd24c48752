"""A native engine in a child process: a crash there (a segfault in llama.cpp) is an error here, not the end.

llama.cpp runs C and C++ kernels in the address space of whoever loads it; a fault in them
(ggml-org/llama.cpp#20824 on AMX CPUs) kills that process, and with it every configuration a run
had still to evaluate. `IsolatedEngine` builds the engine in a child process — spawned, so a fresh
interpreter with none of this one's threads — and forwards the request types over a pipe:

    parent                                  child
    (method, args, kwargs)        ──►       getattr(engine, method)(*args, **kwargs)
                                  ◄──       ("token", index, token)   for each streamed token
                                  ◄──       ("result", value) | ("error", exception)

When the child dies, the call raises `EngineCrashed` with one line that names the signal.
"""

from __future__ import annotations

import multiprocessing
import pickle
import resource
import signal
import threading
import traceback
import weakref

from engines.scoring import TokenizedRequests
from harness.errors import DomainbenchError

# What the parent keeps of the engine built in the child: what callers read as plain attributes.
_FACTS = ("tokenizer", "prefix_token_id", "max_length", "max_batch_tokens", "device", "dtype", "progress")
_CLOSE_SECONDS = 10


class EngineCrashed(DomainbenchError):
    """The engine's process died (a signal, or an exit) while it held or answered a request."""


class IsolatedEngine(TokenizedRequests):
    """The engine `build(*args, **kwargs)` makes, run in a child process; `name` says what runs there (llama.cpp)."""

    fingerprint: str | None = None  # set by the registry's opener, which knows the source

    def __init__(self, build, *args, name: str, **kwargs):
        self.name = name
        context = multiprocessing.get_context("spawn")
        self._connection, child_end = context.Pipe()
        self._process = context.Process(target=_serve, args=(child_end, build, args, kwargs),
                                        name=f"domainbench-{name}", daemon=True)
        self._process.start()
        child_end.close()
        self._lock = threading.Lock()  # one request at a time on the pipe, whichever thread asks
        self._stop = weakref.finalize(self, _stop, self._connection, self._process)
        _, facts, self.engine_class = self._reply()
        self._progress = facts.pop("progress", False)
        vars(self).update(facts)

    # ----- the engine's interface, forwarded --------------------------------------------------

    def loglikelihood(self, requests):
        return self._call("loglikelihood", requests)

    def loglikelihood_rolling(self, requests, **kwargs):
        return self._call("loglikelihood_rolling", requests, **kwargs)

    def generate(self, requests, *, on_token=None):
        return self._call("generate", requests, stream=on_token is not None, on_token=on_token)

    @property
    def tokens_processed(self) -> int:
        return self._call("getattr", "tokens_processed")

    @property
    def progress(self) -> bool:
        return self._progress

    @progress.setter
    def progress(self, enabled: bool) -> None:
        self._call("setattr", "progress", enabled)
        self._progress = enabled

    def peak_memory(self) -> tuple[int, str]:
        """The engine process's peak resident memory: it has loaded this one model and nothing else."""
        return self._call("peak_memory")

    def close(self) -> None:
        """Stop the engine's process (its model and memory go with it)."""
        self._stop()

    # ----- the pipe ---------------------------------------------------------------------------

    def _call(self, method: str, *args, on_token=None, **kwargs):
        with self._lock:
            try:
                self._connection.send((method, args, kwargs))
            except OSError:  # the child is gone: say how it went
                raise EngineCrashed(self._death()) from None
            while (message := self._reply())[0] == "token":
                on_token(*message[1:])
            return message[1]

    def _reply(self) -> tuple:
        """The child's next message; its exception raised here, its death as EngineCrashed."""
        try:
            message = self._connection.recv()
        except (EOFError, OSError):
            raise EngineCrashed(self._death()) from None
        if message[0] == "error":
            raise message[1]
        return message

    def _death(self) -> str:
        self._process.join(_CLOSE_SECONDS)
        code = self._process.exitcode
        if code is None:
            self._process.kill()
            return f"engine crashed: {self.name} closed its pipe and stopped answering"
        if code < 0:
            return f"engine crashed: signal {-code} ({signal.Signals(-code).name}) in {self.name}"
        return f"engine crashed: {self.name} exited with status {code}"


def _stop(connection, process) -> None:
    try:
        connection.send(("close", (), {}))
    except OSError:
        pass
    process.join(_CLOSE_SECONDS)
    if process.is_alive():
        process.kill()
        process.join()
    connection.close()


# ----- the child ------------------------------------------------------------------------------

def _serve(connection, build, args, kwargs) -> None:
    """The child's whole life: build the engine, then answer requests until told to close."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it stops this process
    try:
        engine = build(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 — every failure goes to the parent, which raises it
        _send_error(connection, exc)
        return
    facts = {name: getattr(engine, name) for name in _FACTS if hasattr(engine, name)}
    connection.send(("ready", facts, type(engine).__name__))
    while True:
        method, args, kwargs = connection.recv()
        if method == "close":
            if hasattr(engine, "close"):
                engine.close()
            return
        try:
            connection.send(("result", _answer(engine, connection, method, args, kwargs)))
        except Exception as exc:  # noqa: BLE001 — as above
            _send_error(connection, exc)


def _answer(engine, connection, method: str, args: tuple, kwargs: dict):
    if method == "getattr":
        return getattr(engine, args[0])
    if method == "setattr":
        return setattr(engine, *args)
    if method == "peak_memory":
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "cpu_process_max_rss"
    if method == "generate":
        streaming = kwargs.pop("stream")
        kwargs["on_token"] = (lambda index, token: connection.send(("token", index, token))) if streaming else None
    return getattr(engine, method)(*args, **kwargs)


def _send_error(connection, exc: Exception) -> None:
    if not isinstance(exc, DomainbenchError):  # a bug: keep where it happened
        exc.add_note(f"in the engine's process:\n{traceback.format_exc()}")
    try:
        connection.send(("error", exc))
    except (pickle.PicklingError, TypeError, AttributeError):
        connection.send(("error", RuntimeError(f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")))
