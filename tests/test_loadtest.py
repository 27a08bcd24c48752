"""`domainbench loadtest`: streamed completions at set concurrencies against llama-cpp-python's server
on the builtin GGUF. Requests are bounded in count (a handful per level) and tokens (8 at most)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import httpx
import pytest
from servers import free_port, start_llama_server, stop_server

from cli.main import main
from serve.loadtest import arrival_offsets
from stats.descriptive import percentile

# A request of 8 tokens takes well under a second here; a killed server must not leave it hanging.
LOADTEST_SECONDS = 60


def test_percentiles_are_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert [percentile(values, q) for q in (0.5, 0.95, 0.99)] == [50.0, 95.0, 99.0]
    assert percentile([3.0], 0.99) == 3.0 and percentile([], 0.5) is None


def test_arrival_times_are_seeded_and_average_the_rate():
    poisson = arrival_offsets(4000, 5.0, "poisson", seed=7)
    assert poisson == arrival_offsets(4000, 5.0, "poisson", seed=7) != arrival_offsets(4000, 5.0, "poisson", seed=8)
    assert poisson[0] == 0 and all(b >= a for a, b in zip(poisson, poisson[1:]))
    assert 3999 / poisson[-1] == pytest.approx(5.0, rel=0.1)
    gaps = [b - a for a, b in zip(poisson, poisson[1:])]
    assert min(gaps) < 0.02 and max(gaps) > 0.8  # bursts and lulls, as Poisson arrivals have
    assert arrival_offsets(4, 2.0, "constant", seed=7) == [0.0, 0.5, 1.0, 1.5]


@pytest.mark.parametrize("flags, message", [
    (["--rate", "2", "--concurrency", "1,8"], "not both"),
    (["--rate", "0,2"], "--rate '0,2': expected comma-separated positive requests per second"),
])
def test_bad_rate_flags_are_one_line_and_exit_2_before_any_work(capsys, tmp_path, flags, message):
    out = tmp_path / "loadtest.json"
    with pytest.raises(SystemExit) as exit_info:
        main(["loadtest", f"openai+http://127.0.0.1:{free_port()}/v1", "--suite", "tiny", "--out", str(out), *flags])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and message in error
    assert not out.exists()


def test_a_down_endpoint_is_one_line_and_exit_2_before_any_work(capsys, tmp_path):
    url = f"http://127.0.0.1:{free_port()}/v1"
    out = tmp_path / "loadtest.json"
    with pytest.raises(SystemExit) as exit_info:
        main(["loadtest", f"openai+{url}", "--suite", "tiny", "--out", str(out)])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and url in error and "not reachable" in error
    assert not out.exists()


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    process, url = start_llama_server(tmp_path_factory.mktemp("server") / "server.log")
    yield url
    stop_server(process)


@pytest.mark.slow
def test_loadtest_at_two_concurrencies_writes_sane_figures(llama_server, tmp_path, capsys):
    out = tmp_path / "loadtest.json"
    started = time.perf_counter()
    main(["loadtest", f"openai+{llama_server}", "--suite", "tiny", "--tasks", "errno-qa", "--concurrency", "1,2",
          "--requests", "4", "--max-tokens", "8", "--out", str(out)])
    assert time.perf_counter() - started < LOADTEST_SECONDS
    record = json.loads(out.read_text())
    assert record["endpoint"] == llama_server and [level["concurrency"] for level in record["levels"]] == [1, 2]
    for level in record["levels"]:
        assert level["requests"] == 4 and level["errors"] == 0 and level["error_rate"] == 0
        assert 0 < level["latency_p50_seconds"] <= level["latency_p95_seconds"] <= level["latency_p99_seconds"]
        assert 0 < level["ttft_p50_seconds"] <= level["ttft_p95_seconds"] <= level["latency_p99_seconds"]
        assert level["output_tokens_per_second"] > 0 and level["requests_per_second"] > 0
        assert level["requests_per_second"] <= level["requests"] / level["latency_p50_seconds"] * level["concurrency"]
    assert "TTFT p50" in capsys.readouterr().out


@pytest.mark.slow
def test_a_server_killed_mid_loadtest_gives_counted_errors_and_a_result(tmp_path):
    log = tmp_path / "server.log"
    process, url = start_llama_server(log)
    out = tmp_path / "loadtest.json"
    try:
        running = threading.Thread(target=main, args=([
            "loadtest", f"openai+{url}", "--suite", "tiny", "--tasks", "errno-qa", "--concurrency", "1",
            "--requests", "12", "--max-tokens", "8", "--timeout", "20", "--out", str(out)],))
        running.start()
        deadline = time.monotonic() + LOADTEST_SECONDS
        # uvicorn logs each request as its response starts: kill once two have been answered.
        while log.read_text(errors="replace").count("POST /v1/completions") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
        running.join(timeout=LOADTEST_SECONDS)
        assert not running.is_alive()
    finally:
        stop_server(process)
    (level,) = json.loads(out.read_text())["levels"]
    assert level["requests"] == 12 and 1 <= level["errors"] <= 11
    assert set(level["errors_by_kind"]) == {"connection"}
    assert level["error_rate"] == pytest.approx(level["errors"] / 12) and level["latency_p50_seconds"] > 0


@pytest.fixture
def tiny_endpoint(tiny_model, tiny_tokenizer):
    """`domainbench serve`'s app on the tiny model, in a thread, saying it serves configuration `base`."""
    from servers import app_in_thread

    from engines.hf import HFEngine
    from serve.api import create_app
    from serve.model import ServedModel

    engine = HFEngine(tiny_model, tiny_tokenizer, device="cpu", progress=False)
    with app_in_thread(create_app(ServedModel("tiny", engine, about={"configuration": "base",
                                                                     "engine": "HFEngine"}))) as url:
        yield f"openai+{url}"


def _evaluated_run(tmp_path):
    from report_runs import qa_result, write_run

    return write_run(tmp_path / "run", [qa_result("nightly", "base", 10)])


def test_a_load_test_attached_to_a_run_is_what_its_report_shows(tiny_endpoint, tmp_path, capsys):
    run = _evaluated_run(tmp_path)
    main(["loadtest", tiny_endpoint, "--suite", "tiny", "--tasks", "errno-qa", "--concurrency", "1,2",
          "--requests", "2", "--max-tokens", "4", "--tokenizer", "tiny-random-llama", "--timeout", "30",
          "--run", str(run), "--configuration", "base"])
    record = json.loads((run / "serving" / "base.json").read_text())
    assert record["configuration"] == "base" and record["engine"] == "domainbench serve (HFEngine)"
    assert [(level["concurrency"], level["errors"]) for level in record["levels"]] == [(1, 0), (2, 0)]
    main(["report", str(run)])
    report = (run / "report.md").read_text()
    assert "## Serving under load" in report and "domainbench serve (HFEngine)" in report
    assert record["endpoint"] in report and "| 2 in flight | 2 |" in report


def test_a_load_test_without_out_never_replaces_an_earlier_one(tiny_endpoint, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        main(["loadtest", tiny_endpoint, "--suite", "tiny", "--tasks", "errno-qa", "--concurrency", "1",
              "--requests", "1", "--max-tokens", "2", "--tokenizer", "tiny-random-llama", "--timeout", "30"])
    written = sorted((tmp_path / "runs").glob("loadtest-tiny-127.0.0.1-*.json"))
    assert len(written) == 2 and all(json.loads(path.read_text())["levels"] for path in written)


def test_rate_levels_send_on_schedule_whatever_the_server_does(tiny_endpoint, tmp_path, capsys):
    out = tmp_path / "loadtest.json"
    main(["loadtest", tiny_endpoint, "--suite", "tiny", "--tasks", "errno-qa", "--rate", "2,8", "--arrivals",
          "constant", "--requests", "4", "--warmup", "2", "--max-tokens", "4", "--tokenizer", "tiny-random-llama",
          "--out", str(out)])
    record = json.loads(out.read_text())
    # The server answered the 2 warm-up requests too; no level counts them.
    served = httpx.get(tiny_endpoint.removeprefix("openai+").removesuffix("/v1") + "/metrics", timeout=10).text
    assert 'domainbench_requests_total{route="completions",status="200"} 10.0' in served
    assert record["warmup_requests"] == 2
    assert [(level["rate"], level["arrivals"]) for level in record["levels"]] == [(2.0, "constant"), (8.0, "constant")]
    for level in record["levels"]:
        assert level["requests"] == 4 and level["errors"] == 0 and 1 <= level["concurrency"] <= 4
        # Evenly spaced: the last request leaves 3 gaps after the first, so the level lasts at least that long.
        assert level["seconds"] >= 3 / level["rate"]
    assert record["arrival_seed"] == 0 and "2 req/s constant" in capsys.readouterr().out


def test_an_endpoint_serving_another_configuration_is_refused(tiny_endpoint, tmp_path, capsys):
    from report_runs import qa_result, write_run

    run = write_run(tmp_path / "run", [qa_result("nightly", "adapter", 10)])
    with pytest.raises(SystemExit) as exit_info:
        main(["loadtest", tiny_endpoint, "--suite", "tiny", "--run", str(run), "--configuration", "adapter"])
    assert exit_info.value.code == 2
    assert "serves configuration 'base', not --configuration 'adapter'" in capsys.readouterr().err
    assert not (run / "serving").exists()


@pytest.mark.parametrize("arguments, message", [
    (["--configuration", "base"], "it goes with --run RUN_DIR"),
    (["--run", "{run}"], "--configuration is required"),
    (["--run", "{run}", "--configuration", "adapter"], "no results for configuration 'adapter'"),
    (["--run", "{run}", "--configuration", "base", "--out", "x.json"], "give --out or --run, not both"),
])
def test_attaching_to_a_run_is_checked_before_any_work(arguments, message, tmp_path, capsys):
    run = _evaluated_run(tmp_path)
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens: the check must come first
    with pytest.raises(SystemExit) as exit_info:
        main(["loadtest", f"openai+{url}", "--suite", "tiny", *(a.format(run=run) for a in arguments)])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and message in error


def _streaming_server(events: list[str]):
    """An app whose completions stream answers 200 with exactly these SSE data lines."""
    from fastapi import FastAPI
    from fastapi.responses import StreamingResponse

    app = FastAPI()

    @app.post("/v1/completions")
    def completions():
        return StreamingResponse((f"data: {event}\n\n" for event in events), media_type="text/event-stream")
    return app


@pytest.mark.parametrize("events, kind", [
    ([json.dumps({"choices": [{"index": 0, "text": "Hi"}]}),
      json.dumps({"error": {"message": "RuntimeError: the engine broke", "code": "engine_RuntimeError"}}), "[DONE]"],
     "stream_error"),
    ([json.dumps({"choices": [{"index": 0, "text": "Hi"}]})], "incomplete_stream"),
])
def test_a_stream_that_fails_after_its_200_counts_as_failed(events, kind):
    from servers import app_in_thread

    from engines.endpoint import Endpoint
    from serve.loadtest import stream_completion, summarize_level

    with app_in_thread(_streaming_server(events)) as url, httpx.Client(base_url=url, timeout=10) as client:
        done = stream_completion(client, Endpoint(url), "m", "Hello", 4)
    assert done.error == kind
    level = summarize_level(1, [done], 1.0)
    assert level.errors == 1 and level.errors_by_kind == {kind: 1} and level.latency_p50_seconds is None
