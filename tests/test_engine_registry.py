"""The engine registry: every engine keeps the Engine Protocol, and a new engine is one class plus one
registration, picked up by `eval`, `run` and `serve` without touching them."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from cli.main import cli
from engines.base import Engine
from engines.hf import HFEngine
from engines.isolated import IsolatedEngine
from engines.llama_cpp import LlamaCppEngine
from engines.openai_api import OpenAIEngine
from engines.registry import EngineKind, EngineOptions, engine_kind, engine_kinds, register_engine, unregister_engine
from harness.requests import Loglikelihood
from harness.tiny import build_tiny_tokenizer
from run.spec import load_spec
from tests.endpoint_fakes import completion
from tests.servers import app_in_thread
from tests.test_runner import write_run_suite

PROTOCOL = ("loglikelihood", "loglikelihood_rolling", "generate", "chat_prompt", "close", "tokens_processed")


# ----- the toy engine: one class and one registration ----------------------------------------------

class ToyEngine:
    """Says the same answer to everything and scores a continuation by its length: easy to recognise."""

    answer = "toy answer"

    def __init__(self, model_dir: Path):
        self.tokenizer = build_tiny_tokenizer()
        self.max_length, self.progress, self.tokens_processed = 256, False, 0
        self.fingerprint = "toy-" + json.loads((model_dir / "config.json").read_text())["toy_engine"]

    def loglikelihood(self, requests):
        return [Loglikelihood(-float(len(r.continuation)), True, len(r.continuation)) for r in requests]

    def loglikelihood_rolling(self, requests):
        return [Loglikelihood(-float(len(r.text)), True, len(r.text)) for r in requests]

    def generate(self, requests, *, on_token=None):
        tokens = self.tokenizer(self.answer, add_special_tokens=False)["input_ids"]
        for index in range(len(requests)):
            for token in tokens if on_token else ():
                on_token(index, token)
        self.tokens_processed += len(tokens) * len(requests)
        return [self.answer] * len(requests)

    def chat_prompt(self, user_text):
        return user_text

    def close(self):
        pass


def is_toy_model(spec: str) -> bool:
    config = Path(spec) / "config.json"
    return config.is_file() and "toy_engine" in json.loads(config.read_text())


TOY = EngineKind("toy", is_toy_model, lambda spec, options: ToyEngine(Path(spec)))


@pytest.fixture
def toy_model(tmp_path):
    register_engine(TOY)
    model = tmp_path / "toy-model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"toy_engine": "v1"}))
    yield model
    unregister_engine("toy")


# ----- conformance ---------------------------------------------------------------------------------

@pytest.mark.parametrize("engine_class", [HFEngine, LlamaCppEngine, IsolatedEngine, OpenAIEngine, ToyEngine])
def test_every_engine_class_offers_the_protocol(engine_class):
    missing = [name for name in PROTOCOL if not hasattr(engine_class, name) and name != "tokens_processed"]
    assert not missing
    assert "on_token" in inspect.signature(engine_class.generate).parameters


def test_engines_as_opened_are_engines(tiny_model, tiny_tokenizer, fake_server, toy_model):
    opened = [HFEngine(tiny_model, tiny_tokenizer, device="cpu"), engine_kind(str(toy_model)).open(str(toy_model),
                                                                                               EngineOptions())]
    server = fake_server(lambda body: completion(" Paris"))
    opened.append(engine_kind(f"openai+{server.url}").open(f"openai+{server.url}", EngineOptions(progress=False)))
    assert all(isinstance(engine, Engine) for engine in opened)  # data members too: tokenizer, fingerprint, …
    assert opened[1].fingerprint == "toy-v1" and len(opened[2].fingerprint) == 64  # as their openers know them
    opened[-1].close()


def test_each_spec_goes_to_its_kind(tmp_path, toy_model):
    kinds = {spec: engine_kind(spec).name for spec in
             ("tiny-random-llama", str(tmp_path / "m.gguf"), "openai+http://127.0.0.1:1/v1",
              "openai-chat+http://127.0.0.1:1/v1", str(toy_model))}
    assert list(kinds.values()) == ["hf", "llama.cpp", "openai", "openai", "toy"]
    assert [kind.name for kind in engine_kinds()][-1] == "hf"  # the fallback is asked last


def test_a_kind_is_registered_once(toy_model):
    with pytest.raises(Exception, match="registered already"):
        register_engine(TOY)


def test_an_endpoint_refuses_local_options():
    with pytest.raises(Exception, match="do not apply to an endpoint"):
        engine_kind("openai+http://127.0.0.1:1/v1").open("openai+http://127.0.0.1:1/v1",
                                                         EngineOptions(device="cpu"))


# ----- the toy engine where users meet it ----------------------------------------------------------

def test_eval_runs_a_registered_engine(toy_model, tmp_path):
    result = CliRunner().invoke(cli, ["eval", "--model", str(toy_model), "--suite", "tiny", "--tasks", "errno-qa",
                                      "--output", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    written = json.loads((tmp_path / "out" / "results" / "base" / "errno-qa.json").read_text())
    assert {e["prediction"] for e in written["examples"]} == {ToyEngine.answer}
    assert written["model"]["fingerprint"] == "toy-v1"


def test_run_evaluates_a_registered_engine(toy_model, tmp_path, monkeypatch):
    from run.runner import run

    monkeypatch.setenv("DOMAINBENCH_CACHE", str(tmp_path / "cache"))
    spec = load_spec(None, {"name": "toy", "suite": str(write_run_suite(tmp_path / "suite")), "model": str(toy_model),
                            "output": str(tmp_path / "runs"), "profile": "quick", "device": "cpu",
                            "configurations": ["base"]})
    run_dir = run(spec, rebuild_report=False)
    answered = json.loads((run_dir / "results" / "base" / "errno-qa.json").read_text())
    assert {e["prediction"] for e in answered["examples"]} == {ToyEngine.answer}
    assert answered["cost"]["serving"]["engine"] == "ToyEngine"


def test_serve_serves_a_registered_engine(toy_model):
    from serve.api import create_app
    from serve.served import served_from_spec

    served = served_from_spec(str(toy_model))
    assert served.about["engine"] == "ToyEngine"
    with app_in_thread(create_app(served)) as url, httpx.Client(timeout=30) as http:
        body = http.post(f"{url}/completions", json={"prompt": "Hello", "max_tokens": 8}).json()
    assert body["choices"][0]["text"] == ToyEngine.answer


@pytest.mark.slow
def test_eval_of_a_gguf_file_runs_it_in_llama_cpp(tmp_path, monkeypatch):
    """A .gguf model spec is llama.cpp's kind everywhere: eval scores it there, not a dequantized copy."""
    from harness.models import gguf_origin

    monkeypatch.setenv("DOMAINBENCH_CACHE", str(tmp_path / "cache"))
    gguf = gguf_origin("smollm2-135m-instruct")
    result = CliRunner().invoke(cli, ["eval", "--model", str(gguf), "--suite", "tiny", "--tasks", "errno-qa",
                                      "--limit", "2", "--output", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    written = json.loads((tmp_path / "out" / "results" / "base" / "errno-qa.json").read_text())
    assert written["settings"]["dtype"] == "Q4_1"  # the file's own type: llama.cpp ran it
    assert not (tmp_path / "cache" / "models").exists()  # nothing was converted for transformers
