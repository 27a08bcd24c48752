"""The engine's three request types on a GGUF file, computed by llama.cpp (llama-cpp-python).

This is how the `gguf` form is evaluated: the model as llama.cpp runs it, quantized kernels,
f16 KV cache and all. Text is tokenized by the matching Hugging Face tokenizer with the
`HFEngine`'s own code (same context/continuation split, same prefix token, same rolling windows),
and the ids go to llama.cpp, so both engines score the very same tokens and differ only in the
arithmetic.

How it stays fast on a CPU:
- only the scored positions ask llama.cpp for logits, and their log-probs are taken chunk by
  chunk straight from llama.cpp's output buffer;
- requests run one sequence at a time in lexicographic token order, so requests that share a
  context (a multiple-choice example's labels, few-shot prompts) follow each other and llama.cpp's
  KV cache keeps the shared prefix: only the tokens after it are computed.
"""

from __future__ import annotations

import ctypes
import os
import weakref
from pathlib import Path

import numpy as np
import torch

from engines.hf import DEFAULT_MAX_LENGTH
from engines.registry import EngineOptions
from engines.scoring import (
    ScoringRow,
    TokenizedRequests,
    logprobs_from_logits,
    rolling_windows,
)
from engines.stops import cut_at_stop
from engines.tokens import prefix_token_id
from harness.errors import DomainbenchError
from harness.models import cpu_has_amx, load_tokenizer, model_fingerprint
from harness.progress import counting_bar
from harness.requests import (
    GenerationRequest,
    Loglikelihood,
    LoglikelihoodRequest,
    RollingRequest,
    TokenCallback,
)

DEFAULT_BATCH_TOKENS = 512
# Rows of fp32 logits per log-softmax: ~8 MB stays in a CPU's cache (as HFEngine's head chunks).
_LOGPROB_CHUNK_BYTES = 1 << 23


class LlamaCppEngine(TokenizedRequests):
    """Runs the three request types on a GGUF file through llama.cpp, tokenized by `tokenizer`."""

    fingerprint: str | None = None  # set by the registry's opener, which knows the source

    def __init__(self, gguf_path: str | Path, tokenizer, *, max_length: int | None = None,
                 max_batch_tokens: int | None = None, n_threads: int | None = None, n_gpu_layers: int = 0,
                 progress: bool = True):
        """n_threads: CPU threads (default: all this process may use); n_gpu_layers: layers llama.cpp
        offloads to a GPU (-1: all), where its build has GPU support."""
        self.tokenizer = tokenizer
        self.prefix_token_id = prefix_token_id(tokenizer)
        self.progress = progress
        self._llama = _LlamaContext(Path(gguf_path), max_length=max_length,
                                    n_batch=max_batch_tokens or DEFAULT_BATCH_TOKENS,
                                    n_threads=n_threads or _usable_cpus(), n_gpu_layers=n_gpu_layers)
        self.max_length = self._llama.n_ctx
        self.max_batch_tokens = self._llama.n_batch
        self.device = self._llama.device
        self.dtype = self._llama.file_type
        if len(tokenizer) > self._llama.n_vocab:
            raise DomainbenchError(f"model {gguf_path}: the tokenizer has {len(tokenizer)} tokens, the GGUF "
                                   f"model {self._llama.n_vocab}: they do not belong together")

    # ----- request API -------------------------------------------------------------------------

    def loglikelihood(self, requests: list[LoglikelihoodRequest]) -> list[Loglikelihood]:
        """Log-probability of each continuation given its context (as HFEngine.loglikelihood)."""
        if not requests:
            return []
        contexts, continuations = self._encode_pairs(requests)
        rows = [self._continuation_row(c, k) for c, k in zip(contexts, continuations)]
        return self._score(rows, description="loglikelihood", greedy=True)

    def loglikelihood_rolling(self, requests: list[RollingRequest], *,
                              stride: int | None = None) -> list[Loglikelihood]:
        """Log-probability of each whole text in HFEngine's windows; `is_greedy` is not computed."""
        stride = stride or self.max_length
        if not 0 < stride <= self.max_length:
            raise ValueError(f"stride must be in 1..{self.max_length}, got {stride}")
        rows, owners = [], []
        for owner, tokens in enumerate(self._encode([r.text for r in requests])):
            for row in rolling_windows(tokens, self.prefix_token_id, self.max_length, stride):
                rows.append(row)
                owners.append(owner)
        totals = [[0.0, True, 0] for _ in requests]
        for owner, score in zip(owners, self._score(rows, description="perplexity", greedy=False)):
            totals[owner][0] += score.logprob
            totals[owner][1] &= score.is_greedy
            totals[owner][2] += score.n_tokens
        return [Loglikelihood(logprob, greedy, n) for logprob, greedy, n in totals]

    def generate(self, requests: list[GenerationRequest], *, on_token: TokenCallback | None = None) -> list[str]:
        """Greedy continuations, each cut at its first stop string (not included).

        `on_token(request_index, token)` hears each new token as it is decoded.
        """
        prompts = [self._with_prefix(p) for p in self._encode([r.prompt for r in requests])]
        results: list[str | None] = [None] * len(requests)
        with self._bar("generate", len(requests)) as advance:
            for index in sorted(range(len(requests)), key=lambda i: prompts[i]):
                heard = None if on_token is None else (lambda token, index=index: on_token(index, token))
                results[index] = self._generate_one(prompts[index], requests[index], heard)
                advance(1)
        return results

    @property
    def tokens_processed(self) -> int:
        """Tokens llama.cpp computed (a KV-cached prefix is not computed again): what tokens/s counts."""
        return self._llama.tokens_decoded

    def close(self) -> None:
        """Free llama.cpp's model and context now rather than when the engine is collected."""
        self._llama.close()

    # ----- scoring -----------------------------------------------------------------------------

    def _score(self, rows: list[ScoringRow], *, description: str, greedy: bool) -> list[Loglikelihood]:
        results: list[Loglikelihood | None] = [None] * len(rows)
        # Lexicographic order puts rows with a shared context side by side: the KV cache keeps it.
        with self._bar(description, len(rows)) as advance:
            for index in sorted(range(len(rows)), key=lambda i: rows[i].tokens):
                results[index] = self._score_row(rows[index], greedy)
                advance(1)
        return results

    def _score_row(self, row: ScoringRow, greedy: bool) -> Loglikelihood:
        if row.n_scored == 0:
            return Loglikelihood(0.0, True, 0)
        inputs = list(row.tokens[:-1])
        targets = torch.tensor(row.tokens[-row.n_scored:])
        logprob, all_greedy, done = 0.0, True, 0
        for logits in self._llama.logits(inputs, first_output=len(inputs) - row.n_scored):
            step = max(1, _LOGPROB_CHUNK_BYTES // (4 * logits.shape[1]))
            for start in range(0, logits.shape[0], step):
                block = torch.from_numpy(logits[start:start + step])
                token_logprobs, is_argmax = logprobs_from_logits(block, targets[done:done + block.shape[0]], greedy)
                logprob += float(token_logprobs.double().sum())
                all_greedy &= bool(is_argmax.all())
                done += block.shape[0]
        return Loglikelihood(logprob, all_greedy, row.n_scored)

    # ----- generation --------------------------------------------------------------------------

    def _generate_one(self, prompt: list[int], request: GenerationRequest, on_token=None) -> str:
        budget = self.max_length - request.max_new_tokens
        tokens = prompt[-budget:] if budget > 0 else prompt[-1:]
        n_prompt = len(tokens)
        for _ in range(request.max_new_tokens):
            (logits,) = self._llama.logits(tokens, first_output=len(tokens) - 1)
            token = int(logits[0].argmax())
            # HF generate ends at the EOS token; llama.cpp also at its other end-of-generation ones.
            if token == self.tokenizer.eos_token_id or self._llama.is_end_of_generation(token):
                break
            tokens.append(token)
            if on_token is not None:
                on_token(token)
            if request.stop and self._stops_here(tokens[n_prompt:], request.stop):
                break
        text = self.tokenizer.decode(tokens[n_prompt:], skip_special_tokens=True)
        return cut_at_stop(text, request.stop)

    def _stops_here(self, new_tokens: list[int], stops: tuple[str, ...]) -> bool:
        # The rule of engines.stops.StopAfterAnswerBegins, applied to one sequence.
        text = self.tokenizer.decode(new_tokens, skip_special_tokens=True)
        return cut_at_stop(text, stops) != text

    def _bar(self, description: str, total: int):
        return counting_bar(description, total, enabled=self.progress and total > 0)


class _LlamaContext:
    """One llama.cpp model and context with a single sequence whose KV cache is reused by prefix.

    Driven through llama.h's C API as llama-cpp-python binds it (`llama_cpp.llama_*`), which
    lets a batch ask for logits at only the positions that are scored.
    """

    def __init__(self, path: Path, *, max_length: int | None, n_batch: int, n_threads: int, n_gpu_layers: int):
        llama_cpp = import_llama_cpp()
        if not path.is_file():
            raise DomainbenchError(f"model {path}: no such GGUF file")
        self._api = llama_cpp
        _backend_init(llama_cpp)
        model_params = portable_model_params(llama_cpp.llama_model_default_params())
        model_params.n_gpu_layers = n_gpu_layers if n_gpu_layers >= 0 else 0x7FFFFFFF
        model = llama_cpp.llama_model_load_from_file(str(path).encode(), model_params)
        if not model:
            raise DomainbenchError(f"model {path}: llama.cpp cannot load this GGUF file{llama_cpp_error()}")
        n_ctx_train = llama_cpp.llama_model_n_ctx_train(model)
        self.n_ctx = max_length or min(n_ctx_train, DEFAULT_MAX_LENGTH)
        self.n_batch = min(n_batch, self.n_ctx)
        context_params = llama_cpp.llama_context_default_params()
        context_params.n_ctx = self.n_ctx
        context_params.n_batch = context_params.n_ubatch = self.n_batch
        context_params.n_seq_max = 1
        context_params.n_threads = context_params.n_threads_batch = n_threads
        context = llama_cpp.llama_init_from_model(model, context_params)
        if not context:
            llama_cpp.llama_model_free(model)
            raise DomainbenchError(f"model {path}: llama.cpp cannot make a context of {self.n_ctx} tokens for it")
        self._model, self._context = model, context
        self._vocab = llama_cpp.llama_model_get_vocab(model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self._vocab)
        self._memory = llama_cpp.llama_get_memory(context)
        self._batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)
        self._cached: list[int] = []
        self.tokens_decoded = 0
        self.file_type = _file_type_name(self._metadata("general.file_type"))
        self.device = "cuda" if n_gpu_layers != 0 and llama_cpp.llama_supports_gpu_offload() else "cpu"
        self._free = weakref.finalize(self, _free, llama_cpp, self._batch, context, model)

    def logits(self, tokens: list[int], *, first_output: int):
        """Logits at positions first_output.. of `tokens`, one [rows, vocab] array per llama.cpp batch.

        Each array is a view of llama.cpp's output buffer, valid until the next call. The KV cache
        keeps the longest prefix shared with the previous call (up to first_output, since logits
        of cached positions are gone) and computes the rest.
        """
        api = self._api
        keep = min(_shared_prefix(self._cached, tokens), first_output)
        api.llama_memory_seq_rm(self._memory, 0, keep, -1)
        del self._cached[keep:]
        for start in range(keep, len(tokens), self.n_batch):
            chunk = tokens[start:start + self.n_batch]
            n_outputs = self._fill_batch(chunk, start, first_output)
            status = api.llama_decode(self._context, self._batch)
            if status != 0:
                api.llama_memory_seq_rm(self._memory, 0, 0, -1)
                self._cached.clear()
                raise RuntimeError(f"llama_decode failed with status {status} on {len(tokens)} tokens")
            self._cached.extend(chunk)
            self.tokens_decoded += len(chunk)
            if n_outputs:
                yield np.ctypeslib.as_array(api.llama_get_logits(self._context), shape=(n_outputs, self.n_vocab))

    def is_end_of_generation(self, token: int) -> bool:
        return bool(self._api.llama_vocab_is_eog(self._vocab, token))

    def close(self) -> None:
        self._free()

    def _fill_batch(self, chunk: list[int], start: int, first_output: int) -> int:
        batch = self._batch
        batch.n_tokens = len(chunk)
        n_outputs = 0
        for i, token in enumerate(chunk):
            batch.token[i] = token
            batch.pos[i] = start + i
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = 0
            wanted = start + i >= first_output
            batch.logits[i] = wanted
            n_outputs += wanted
        return n_outputs

    def _metadata(self, key: str) -> str | None:
        buffer = ctypes.create_string_buffer(256)
        length = self._api.llama_model_meta_val_str(self._model, key.encode(), buffer, len(buffer))
        return buffer.value.decode() if length >= 0 else None


def import_llama_cpp():
    """llama-cpp-python with llama.cpp's log kept off stderr, or a one-line DomainbenchError where it is missing.

    llama.cpp logs every load and quantization step, some at levels llama-cpp-python's logger
    cannot silence. Its error lines from here on are kept instead, for `llama_cpp_error` to explain
    a failure of the call that follows.
    """
    global _log_callback
    try:
        import llama_cpp
    except ImportError as exc:
        raise DomainbenchError("the gguf form needs llama-cpp-python: pip install llama-cpp-python") from exc
    if _log_callback is None:
        @llama_cpp.llama_log_callback
        def keep_errors(level, text, user_data):
            if level == _GGML_LOG_LEVEL_ERROR and len(_llama_errors) < 8:
                _llama_errors.append(text.decode(errors="replace").strip())

        llama_cpp.llama_log_set(keep_errors, ctypes.c_void_p(0))
        _log_callback = keep_errors  # ctypes calls into it for as long as the process lives
    _llama_errors.clear()
    return llama_cpp


def portable_model_params(params):
    """llama.cpp's model parameters `params`, with the weight repacking that faults on AMX CPUs turned off there.

    llama.cpp repacks weights at load into "extra" CPU buffer types for faster kernels. Built for
    an Intel CPU with AMX (Sapphire Rapids and later, GGML_NATIVE), it repacks Q4_1/Q8_0 weights
    into its AMX buffer and the first `llama_decode` segfaults (llama-cpp-python 0.3.36,
    ggml-org/llama.cpp#20824); with `use_extra_bufts` off the same file decodes correctly.

    Only AMX CPUs lose the repacking, because elsewhere it changes the numbers: on a 2-core AMD
    EPYC (AVX-512, no AMX; 2026-12-03) the builtin Q4_1 file has no tensor llama.cpp repacks, so
    the switch is a no-op there (decode 106 and 114 tok/s on, 106 off), but a Q4_K_M export has 16
    of 273 tensors repacked to q4_K_8x8, and with the switch off its greedy answers change (best
    decode 141 tok/s on, 117 off, at a load average of 6-7: within that machine's noise). Results
    on every non-AMX CPU stay what they were.
    """
    if cpu_has_amx():
        params.use_extra_bufts = False
    return params


def llama_cpp_error() -> str:
    """The first error llama.cpp logged since `import_llama_cpp`, as a clause for a one-line message."""
    return f": {_llama_errors[0]}" if _llama_errors else ""


_GGML_LOG_LEVEL_ERROR = 4  # ggml.h's enum ggml_log_level (NONE, DEBUG, INFO, WARN, ERROR, CONT)
_llama_errors: list[str] = []
_log_callback = None


_backend_ready = False


def _backend_init(llama_cpp) -> None:
    global _backend_ready
    if not _backend_ready:
        llama_cpp.llama_backend_init()
        _backend_ready = True


def _free(llama_cpp, batch, context, model) -> None:
    llama_cpp.llama_batch_free(batch)
    llama_cpp.llama_free(context)
    llama_cpp.llama_model_free(model)


def _shared_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    mismatch = np.asarray(a[:n]) != np.asarray(b[:n])
    return int(mismatch.argmax())


def _file_type_name(value: str | None) -> str:
    """general.file_type as the type name llama.cpp prints ("Q4_1", "F16", "Q4_K_M")."""
    from gguf import LlamaFileType

    try:
        return LlamaFileType(int(value)).name.removeprefix("MOSTLY_").removeprefix("ALL_")
    except (TypeError, ValueError):
        return "unknown"


def _usable_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def open_gguf(spec: str, options: EngineOptions):
    """The registry's opener for a `.gguf` file: llama.cpp in a process of its own (a native crash takes only it).

    The tokenizer is the one given, else the one saved beside the file (a run's gguf form keeps its
    parent's), else the one the file itself carries.
    """
    from engines.isolated import IsolatedEngine

    path = Path(spec).expanduser()
    if not path.is_file():
        raise DomainbenchError(f"model {spec}: no such GGUF file")
    engine = IsolatedEngine(LlamaCppEngine, path, options.tokenizer or gguf_tokenizer(path), name="llama.cpp",
                            max_batch_tokens=options.max_batch_tokens, progress=options.progress)
    engine.fingerprint = model_fingerprint(path)
    return engine


def gguf_tokenizer(path: Path):
    """The Hugging Face tokenizer that belongs to a GGUF file: saved beside it, else read from the file."""
    beside = path.parent
    return load_tokenizer(beside if (beside / "tokenizer_config.json").is_file() else path)
