"""Which engine runs a model spec: one registry, keyed by the kind of spec.

    engine = open_engine("smollm2-135m-instruct", EngineOptions(device="cpu"))
    engine = open_engine("openai+http://127.0.0.1:8000/v1#r/adapter", EngineOptions(concurrency=4))

Kinds are asked in order and the first that claims a spec opens it: the OpenAI endpoints
(`openai-chat+http://…`, `openai+http://…`), a `.gguf` file (llama.cpp, in a process of its own so
a native crash takes only it down), then everything `harness.models.resolve_model` knows (a builtin
name, a Hugging Face dir or hub id), which the HF engine runs. Adding an engine is one module with
an `open_…(spec, options)` function plus one `register_engine(EngineKind(...))`; the kind's module
is imported only when a spec of that kind is opened, so `domainbench --help` stays fast.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engines.base import Engine
from engines.endpoint import CHAT_ENDPOINT_SCHEME, ENDPOINT_SCHEME
from harness.errors import DomainbenchError


@dataclass(frozen=True)
class EngineOptions:
    """How to open an engine; each kind uses what applies to it (`remote` kinds: no device, dtype or adapter)."""

    device: str | None = None
    dtype: str | None = None
    trust_remote_code: bool = False
    max_batch_tokens: int | None = None
    adapter: Path | None = None       # a PEFT adapter dir put on a local model
    tokenizer: object | None = None   # the model's tokenizer where the spec does not carry one (endpoint, GGUF)
    concurrency: int = 8              # requests in flight (endpoints)
    timeout: float = 60.0             # seconds per request attempt (endpoints)
    progress: bool = True


@dataclass(frozen=True)
class EngineKind:
    """One kind of model spec and the engine that runs it.

    `opener` is `"module:function"` (imported when used) or the function itself, called as
    `function(spec, options) -> Engine`. A `remote` engine runs the model elsewhere (a server): its
    failed requests are recorded rather than fatal, and local options do not apply.
    """

    name: str
    claims: Callable[[str], bool]
    opener: str | Callable[[str, EngineOptions], Engine]
    remote: bool = False

    def open(self, spec: str, options: EngineOptions) -> Engine:
        if self.remote and (options.adapter or options.device or options.max_batch_tokens):
            raise DomainbenchError(f"model {spec}: an adapter, a device and a batch budget do not apply to an "
                                   "endpoint: the server holds the model")
        return _function(self.opener)(spec, options)


def _function(opener):
    if callable(opener):
        return opener
    module, _, name = opener.partition(":")
    return getattr(importlib.import_module(module), name)


def is_endpoint(spec: str) -> bool:
    return spec.startswith((ENDPOINT_SCHEME, CHAT_ENDPOINT_SCHEME))


def is_gguf_file(spec: str) -> bool:
    return not is_endpoint(spec) and Path(spec).suffix == ".gguf"


_KINDS: list[EngineKind] = [
    EngineKind("openai", is_endpoint, "engines.openai_api:open_endpoint", remote=True),
    EngineKind("llama.cpp", is_gguf_file, "engines.llama_cpp:open_gguf"),
    EngineKind("hf", lambda spec: True, "engines.hf:open_hf"),
]


def register_engine(kind: EngineKind) -> None:
    """Add a kind; it is asked before the builtin ones, so it can claim specs they would take."""
    if any(known.name == kind.name for known in _KINDS):
        raise DomainbenchError(f"engine kind {kind.name!r} is registered already")
    _KINDS.insert(0, kind)


def unregister_engine(name: str) -> None:
    _KINDS[:] = [kind for kind in _KINDS if kind.name != name]


def engine_kinds() -> list[EngineKind]:
    return list(_KINDS)


def engine_kind(spec: str) -> EngineKind:
    """The kind that runs `spec`: the first registered kind that claims it."""
    return next(kind for kind in _KINDS if kind.claims(spec))


def open_engine(spec: str, options: EngineOptions | None = None) -> Engine:
    """The engine for `spec`, opened (a model loaded, a process started, a server connected)."""
    return engine_kind(spec).open(spec, options or EngineOptions())
