"""`openai-chat+http://…`: a server that offers only chat completions is a model for generation tasks.

The server is `domainbench serve`'s app on the tiny model, in a thread; a single user message goes
through the same chat path as the evaluation's, so the chat endpoint must generate what the
offline engine generates for the chat-templated prompt.
"""

from __future__ import annotations

import json

import pytest
from servers import app_in_thread

from cli.main import main
from engines.endpoint import Endpoint, parse_endpoint
from engines.hf import HFEngine
from engines.openai_api import NotScorable, OpenAIEngine
from harness.requests import GenerationRequest, LoglikelihoodRequest
from reports.schema import load_result, result_path
from serve.api import create_app
from serve.model import ServedModel


@pytest.fixture
def served(tiny_model, tiny_tokenizer):
    """(offline engine, /v1 url of the same engine served in a thread)."""
    engine = HFEngine(tiny_model, tiny_tokenizer, device="cpu", progress=False)
    with app_in_thread(create_app(ServedModel("tiny", engine))) as url:
        yield engine, url


def test_chat_endpoint_specs_parse():
    assert parse_endpoint("openai-chat+http://127.0.0.1:8000/v1#m") == Endpoint("http://127.0.0.1:8000/v1", "m",
                                                                                chat=True)
    assert parse_endpoint("openai-chat+http://h/v1").route == "/chat/completions"
    assert parse_endpoint("openai+http://h/v1").route == "/completions"


def test_generation_goes_through_the_servers_chat_template(served):
    engine, url = served
    prompts = ["Question: which errno means permission denied?\nAnswer:", "The ls command"]
    chat = OpenAIEngine(f"openai-chat+{url}", progress=False)
    try:
        assert chat.chat_prompt(prompts[0]) == prompts[0]  # the server applies its own template
        answers = chat.generate([GenerationRequest(p, ("\n",), 6) for p in prompts])
    finally:
        chat.close()
    assert answers == engine.generate([GenerationRequest(engine.chat_prompt(p), ("\n",), 6) for p in prompts])
    assert chat.errors == []


def test_loglikelihood_on_a_chat_endpoint_is_not_scorable(served):
    _, url = served
    chat = OpenAIEngine(f"openai-chat+{url}", progress=False)
    try:
        with pytest.raises(NotScorable, match="chat completions only"):
            chat.loglikelihood([LoglikelihoodRequest("The errno is", " EINVAL")])
    finally:
        chat.close()
    assert chat.client.requests_made == 0


def test_eval_scores_generation_and_reports_loglikelihood_tasks_not_scorable(served, tmp_path, capsys):
    _, url = served
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--model", f"openai-chat+{url}", "--suite", "tiny", "--tasks", "errno-qa,section-classification",
              "--limit", "2", "--num-fewshot", "0", "--output", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "section-classification: not scorable" in capsys.readouterr().err
    result = load_result(result_path(tmp_path, "base", "errno-qa"))
    assert len(result.examples) == 2 and result.cost["serving"]["request_errors"] == 0
    assert not result_path(tmp_path, "base", "section-classification").exists()


def test_a_chat_endpoint_is_load_tested_through_streamed_chat_completions(served, tmp_path):
    _, url = served
    out = tmp_path / "loadtest.json"
    main(["loadtest", f"openai-chat+{url}", "--suite", "tiny", "--tasks", "errno-qa", "--concurrency", "2",
          "--requests", "2", "--max-tokens", "4", "--timeout", "30", "--out", str(out)])
    (level,) = json.loads(out.read_text())["levels"]
    assert level["errors"] == 0 and level["ttft_p50_seconds"] > 0 and level["output_tokens_per_second"] > 0


def test_monitor_on_a_chat_endpoint_watches_generation_and_names_what_it_cannot_score(served, tmp_path, capsys):
    _, url = served
    baseline, db = tmp_path / "baseline", tmp_path / "monitor.sqlite"
    main(["eval", "--model", f"openai+{url}", "--tokenizer", "tiny-random-llama", "--suite", "tiny", "--tasks",
          "errno-qa,section-classification", "--limit", "2", "--num-fewshot", "0", "--output", str(baseline)])
    capsys.readouterr()
    main(["monitor", f"openai-chat+{url}", "--baseline", str(baseline), "--once", "--sample", "2", "--db", str(db)])
    captured = capsys.readouterr()
    assert "note: section-classification: not watched, not scorable on this endpoint" in captured.err
    assert "verdict: pass" in captured.out and "errno-qa" in captured.out
    # With nothing it can score, the monitor has nothing to watch: one line, exit 2.
    with pytest.raises(SystemExit) as exit_info:
        main(["monitor", f"openai-chat+{url}", "--baseline", str(baseline), "--tasks", "section-classification",
              "--once", "--db", str(db)])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "none of the baseline's tasks (section-classification) can be scored" in error[0]
