"""`domainbench serve --engine vllm` for real: vLLM serves the builtin model, eval's endpoint path and a load
test go through it. Skipped without CUDA or vLLM (`pip install 'domainbench[vllm]'`); run it in a GPU session."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest
from servers import free_port, stop_server, wait_until_ready

from cli.main import main

pytestmark = [pytest.mark.gpu, pytest.mark.slow]

# vLLM compiles and captures CUDA graphs at start-up: minutes on a cold cache.
VLLM_START_SECONDS = 600


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory):
    pytest.importorskip("vllm", reason="needs vLLM: pip install 'domainbench[vllm]'")
    log_path = tmp_path_factory.mktemp("vllm") / "server.log"
    port = free_port()
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "cli", "serve", "--model", "smollm2-135m-instruct",
                                    "--engine", "vllm", "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    wait_until_ready(process, f"{url}/models", VLLM_START_SECONDS, lambda: log_path.read_text()[-2000:])
    yield url
    stop_server(process)


def test_vllm_serves_the_model_under_its_spec_and_a_load_test_runs_clean(vllm_server, tmp_path):
    (model,) = httpx.get(f"{vllm_server}/models", timeout=10).json()["data"]
    assert model["id"] == "smollm2-135m-instruct" and model["owned_by"] == "vllm"
    out = tmp_path / "loadtest.json"
    main(["loadtest", f"openai+{vllm_server}", "--suite", "tiny", "--tasks", "errno-qa", "--concurrency", "1,8",
          "--requests", "16", "--max-tokens", "16", "--tokenizer", "smollm2-135m-instruct", "--out", str(out)])
    record = json.loads(out.read_text())
    assert record["engine"] == "vLLM"
    for level in record["levels"]:
        assert level["errors"] == 0 and 0 < level["ttft_p50_seconds"] <= level["latency_p50_seconds"]


def test_eval_through_vllm_scores_generation_tasks(vllm_server, tmp_path):
    main(["eval", "--model", f"openai+{vllm_server}", "--tokenizer", "smollm2-135m-instruct", "--suite", "tiny",
          "--tasks", "errno-qa", "--limit", "8", "--output", str(tmp_path / "run")])
    (result,) = (tmp_path / "run" / "results").glob("*/errno-qa.json")
    record = json.loads(result.read_text())
    assert len(record["examples"]) == 8 and record["cost"]["serving"]["request_errors"] == 0
