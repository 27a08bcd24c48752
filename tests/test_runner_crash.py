"""A native engine that crashes fails its own configuration: the others finish, the report says why, and a
rerun retries only that one."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import pytest
from test_runner import tiny_recipes, write_run_suite

from engines.isolated import IsolatedEngine
from engines.tokens import prefix_token_id
from harness.errors import DomainbenchError
from harness.models import load_tokenizer
from run.spec import load_spec

CRASH = "engine crashed: signal 11 (SIGSEGV) in llama.cpp"


class SegfaultingLlamaEngine:
    """Loads like LlamaCppEngine, then dies of SIGSEGV at its first request (as llama.cpp's AMX kernels did)."""

    def __init__(self, gguf_path, tokenizer, **_):
        self.tokenizer, self.prefix_token_id = tokenizer, prefix_token_id(tokenizer)
        self.max_length, self.max_batch_tokens, self.device, self.dtype, self.progress = 128, 128, "cpu", "Q4_1", False

    def loglikelihood(self, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGSEGV)

    loglikelihood_rolling = generate = loglikelihood


@pytest.mark.slow
def test_a_crashed_engine_fails_only_its_configuration_and_a_rerun_retries_only_it(tmp_path, monkeypatch):
    import run.runner as runner

    monkeypatch.setenv("DOMAINBENCH_CACHE", str(tmp_path / "cache"))
    overrides = {"name": "r", "suite": str(write_run_suite(tmp_path / "suite")), "model": "tiny-random-llama",
                 "output": str(tmp_path / "runs"), "profile": "quick", "device": "cpu",
                 "recipes": tiny_recipes(tmp_path), "configurations": ["base", "finetuned"]}
    open_model, evaluate_task = runner.open_model, runner.evaluate_task

    def base_is_a_gguf(model_key, prepared, spec, **options):  # base runs isolated, a segfaulting "llama.cpp"
        if model_key != "base":
            return open_model(model_key, prepared, spec, **options)
        tokenizer = load_tokenizer(prepared.weights["base"].path)
        engine = IsolatedEngine(SegfaultingLlamaEngine, Path("planted.gguf"), tokenizer, name="llama.cpp")
        engine.model_bytes = 0
        return engine

    monkeypatch.setattr(runner, "open_model", base_is_a_gguf)
    with pytest.raises(DomainbenchError, match=rf"^run r: base: {re.escape(CRASH)} \(the other"):
        runner.run(load_spec(None, overrides))

    run_dir = tmp_path / "runs" / "r"
    assert not (run_dir / "results" / "base").exists()
    finished = {task: json.loads((run_dir / "results" / "finetuned" / f"{task}.json").read_text())
                for task in ("errno-qa", "perplexity")}
    assert all(result["metrics"] for result in finished.values())  # evaluated after the crash
    for report in ("report.md", "report.html"):
        assert CRASH in (run_dir / report).read_text()

    monkeypatch.setattr(runner, "open_model", open_model)
    evaluated = []
    monkeypatch.setattr(runner, "evaluate_task",
                        lambda *args, **kwargs: evaluated.append(kwargs["label"]) or evaluate_task(*args, **kwargs))
    runner.run(load_spec(None, overrides))
    assert sorted(evaluated) == ["base / errno-qa", "base / perplexity"]
    assert json.loads((run_dir / "results" / "finetuned" / "perplexity.json").read_text()) == finished["perplexity"]
    assert CRASH not in (run_dir / "report.md").read_text()
    assert not (run_dir / "crashed").exists()
