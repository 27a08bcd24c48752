"""A request that still fails after its retries is missing data: left out of the metrics, named, exit 3."""

from __future__ import annotations

import time

import pytest
from endpoint_fakes import character_model, completion

from cli.main import main
from reports.schema import load_result, result_path


def test_eval_leaves_examples_whose_requests_failed_out_of_the_metrics_and_lists_them(fake_server, tmp_path,
                                                                                        capsys):
    def malloc_fails(body):  # as vLLM refuses a prompt longer than its context
        return (400, {"error": "prompt too long"}) if "malloc" in body["prompt"] else character_model(body)

    server = fake_server(malloc_fails)
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--model", f"openai+{server.url}", "--suite", "tiny", "--tasks", "section-classification",
              "--num-fewshot", "0", "--output", str(tmp_path)])
    assert exit_info.value.code == 3  # written, but incomplete
    result = load_result(result_path(tmp_path, "base", "section-classification"))
    assert result.settings["incomplete"] == {"failed_examples": ["cls-te-2"], "examples": 5}
    serving = result.cost["serving"]
    assert serving["unscored_examples"] == ["cls-te-2"] and "cls-te-2" not in [e["id"] for e in result.examples]
    assert result.metrics["accuracy"]["n"] == 4
    assert serving["errors_by_kind"] == {"http_400": 2} and serving["request_errors"] == 2
    assert serving["requests"] == 2 + 10  # the log-prob check, then two labels for each of five examples
    err = capsys.readouterr().err
    assert "2 of 12 requests" in err and "incomplete: section-classification (1 examples left out" in err


def test_a_generation_that_timed_out_is_missing_data_not_a_wrong_answer(fake_server, tmp_path, capsys):
    """Before: a timed-out summary scored ROUGE 0 and the command exited 0. Now it is left out and named."""
    def slow_for_tcp(body):
        if "closes a file descriptor" in body["prompt"]:
            time.sleep(3)
        return completion(" a summary")

    server = fake_server(slow_for_tcp)
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--model", f"openai+{server.url}", "--suite", "tiny", "--tasks", "name-summarization",
              "--num-fewshot", "0", "--timeout", "0.5", "--output", str(tmp_path)])
    assert exit_info.value.code == 3
    result = load_result(result_path(tmp_path, "base", "name-summarization"))
    failed = result.settings["incomplete"]["failed_examples"]
    assert failed and not set(failed) & {e["id"] for e in result.examples}
    assert failed == ["sum-te-2"] and result.metrics["rougeL"]["n"] == result.settings["incomplete"]["examples"] - 1
    assert "incomplete: name-summarization (1 examples left out" in capsys.readouterr().err
