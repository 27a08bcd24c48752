"""Serving the builtin model: `domainbench serve` (the in-process engine, bf16) against llama.cpp's own
server on the builtin Q4_1 file (`serve --engine llama.cpp`), load-tested in the same run.

Each server gets `domainbench loadtest` with the manpages prompts (few-shot, as `eval` builds them),
at most 32 tokens each: 1 and 8 requests in flight (closed loop), then 1 request/s with seeded
Poisson arrivals (open loop, where queueing shows). Each level's latency p50, time to first token
p50 and output tokens/s go in extra_info for both, with ours-over-theirs ratios (latency and TTFT:
below 1 is ours faster; tokens/s: above 1).

Run: `pytest benchmarks/bench_serving.py -s` (part of `make bench`); ~6 minutes on a 2-core CPU.
"""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import contextmanager

from cli.main import main
from harness.models import gguf_origin
from tests.servers import free_port, stop_server, wait_until_ready

REQUESTS = 16
START_SECONDS = 120
LEVELS = (["--concurrency", "1,8", "--warmup", "2"], ["--rate", "1"])  # warm-up: first requests pay for start-up


@contextmanager
def _served(arguments: list[str], log_path):
    """`domainbench serve ARGUMENTS` on 127.0.0.1 and a free port, ready; stopped by PID afterwards."""
    port = free_port()
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "cli", "serve", *arguments, "--host", "127.0.0.1",
                                    "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        wait_until_ready(process, f"{url}/models", START_SECONDS, lambda: log_path.read_text(errors="replace")[-500:])
        yield url
    finally:
        stop_server(process)


def _load_levels(arguments: list[str], folder) -> list[dict]:
    """Every level of the load tests of one server, in LEVELS order."""
    levels = []
    with _served(arguments, folder / "server.log") as url:
        for index, flags in enumerate(LEVELS):
            out = folder / f"loadtest-{index}.json"
            main(["loadtest", f"openai+{url}", "--suite", "manpages", "--tokenizer", "smollm2-135m-instruct",
                  "--requests", str(REQUESTS), "--max-tokens", "32", "--out", str(out), *flags])
            levels += json.loads(out.read_text())["levels"]
    return levels


def _label(level: dict) -> str:
    return f"{level['rate']:g} req/s" if level.get("rate") is not None else f"{level['concurrency']} in flight"


def test_serving_in_process_against_llama_cpp_server(benchmark, tmp_path):
    (tmp_path / "llama").mkdir()
    (tmp_path / "ours").mkdir()
    theirs = _load_levels(["--model", str(gguf_origin("smollm2-135m-instruct")), "--engine", "llama.cpp"],
                          tmp_path / "llama")
    ours: list[dict] = []
    benchmark.pedantic(lambda: ours.extend(_load_levels(["--model", "smollm2-135m-instruct"], tmp_path / "ours")),
                       rounds=1, iterations=1)
    for mine, other in zip(ours, theirs):
        label = _label(mine)
        figures = {key: (mine[key], other[key]) for key in ("latency_p50_seconds", "ttft_p50_seconds",
                                                           "output_tokens_per_second")}
        ratios = {key: a / b if a is not None and b else None for key, (a, b) in figures.items()}
        benchmark.extra_info[label] = {"ours": {key: a for key, (a, _) in figures.items()},
                                       "llama_cpp": {key: b for key, (_, b) in figures.items()},
                                       "ours_over_llama_cpp": ratios, "errors": (mine["errors"], other["errors"])}
        print(f"\n{label}: latency p50 {_pair(figures['latency_p50_seconds'], ratios['latency_p50_seconds'], 's')}; "
              f"TTFT p50 {_pair(figures['ttft_p50_seconds'], ratios['ttft_p50_seconds'], 's')}; output "
              f"{_pair(figures['output_tokens_per_second'], ratios['output_tokens_per_second'], 'tok/s')}; "
              f"errors {mine['errors']} vs {other['errors']}")


def _pair(values: tuple, ratio: float | None, unit: str) -> str:
    ours, theirs = (f"{value:.2f} {unit}" if value is not None else "-" for value in values)
    return f"{ours} vs llama.cpp {theirs} ({f'{ratio:.2f}x' if ratio is not None else '-'})"
