"""`domainbench serve`."""

from __future__ import annotations

import os
from pathlib import Path

import click

from harness.errors import DomainbenchError
from serve.completions import ServingLimits
from serve.traces import DEFAULT_MAX_TRACES


@click.command("serve")
@click.argument("run_dir", required=False, type=click.Path(path_type=Path, file_okay=False))
@click.option("--configuration", default=None, help="Which of the run's configurations to serve (adapter+rag, …).")
@click.option("--model", "model_spec", default=None,
              help="Serve a model spec (builtin name, HF dir, .gguf) instead of a run's configuration.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--api-key", envvar="DOMAINBENCH_API_KEY", default=None,
              help="Every route but /health then wants `Authorization: Bearer KEY` (env DOMAINBENCH_API_KEY); "
                   "handed on to llama.cpp's and vLLM's servers.")
@click.option("--max-concurrent", type=click.IntRange(min=1), default=ServingLimits.max_concurrent, show_default=True,
              help="Requests in flight (waiting ones included) beyond which a request is answered 429.")
@click.option("--drain-seconds", type=click.FloatRange(min=0), default=ServingLimits.drain_seconds, show_default=True,
              help="On SIGTERM/SIGINT: how long open requests have to finish before generation stops (503).")
@click.option("--device", default=None, help="cpu, cuda … (default: the run's device, else cuda if present).")
@click.option("--dtype", default=None, help="With --model: auto, float32, bfloat16, float16.")
@click.option("--engine", "engine_name", type=click.Choice(["in-process", "llama.cpp", "vllm"]), default="in-process",
              show_default=True,
              help="llama.cpp: hand a GGUF model (a .gguf --model, or a run's gguf form without rag) to llama.cpp's "
                   "own OpenAI-compatible server, in this process's place (same PID; no /metrics). vllm: hand the "
                   "model dir (an adapter as the run's merged form; no rag, no gguf/int8/nf4) to `vllm serve` on a "
                   "CUDA GPU, likewise in this process's place (its own /metrics).")
@click.option("--traces", "traces_path", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Record every answered request (id, time, configuration fingerprint, latency, tokens, finish "
                   "reason) in this SQLite store, and take ratings on POST /v1/feedback.")
@click.option("--trace-text", is_flag=True,
              help="With --traces: keep the prompt and answer text too (e-mail addresses and phone numbers scrubbed).")
@click.option("--no-scrub", is_flag=True, help="With --trace-text: keep the text exactly as sent, unscrubbed.")
@click.option("--max-traces", type=click.IntRange(min=1), default=DEFAULT_MAX_TRACES, show_default=True,
              help="With --traces: the newest traces kept; older ones go, their feedback with them.")
def serve_command(run_dir: Path | None, configuration: str | None, model_spec: str | None, host: str, port: int,
                  api_key: str | None, max_concurrent: int, drain_seconds: float, device: str | None,
                  dtype: str | None, engine_name: str, traces_path: Path | None, trace_text: bool, no_scrub: bool,
                  max_traces: int) -> None:
    """Serve what a run evaluated (or a model) as an OpenAI-compatible API with Prometheus metrics.

    Endpoints: /v1/completions, /v1/chat/completions, /v1/models, /health, /metrics; with --traces, /v1/feedback.
    Greedy decoding only; concurrent requests are batched through the in-process engine, or
    `--engine llama.cpp` hands a GGUF to llama.cpp's own server, `--engine vllm` a model dir to vLLM.
    """
    from dataclasses import replace

    from serve.process import exposure_warning, listening_socket, serve
    from serve.served import (
        gguf_to_serve,
        serve_with_llama_cpp,
        served_from_run,
        served_from_spec,
        vllm_command,
        vllm_executable,
        vllm_model,
    )
    from serve.traces import TraceStore

    if (run_dir is None) == (model_spec is None):
        raise DomainbenchError("serve: give a RUN_DIR (with --configuration) or --model SPEC, not both")
    if run_dir is not None and configuration is None:
        raise DomainbenchError(f"serve {run_dir}: --configuration is required (which of the run's configurations)")
    if model_spec is not None and configuration is not None:
        raise DomainbenchError("serve: --configuration names a run's configuration; it goes with RUN_DIR, not --model")
    _check_trace_options(engine_name, traces_path, trace_text, no_scrub)
    sock = listening_socket(host, port)  # a bad or busy port is refused before anything loads
    warning = exposure_warning(host, api_key)
    if warning:
        click.echo(warning, err=True)
    if engine_name != "in-process":
        sock.close()  # the server this process becomes binds the port itself
    if engine_name == "vllm":
        model_dir, name, dtype = vllm_model(run_dir, configuration, model_spec)
        command = vllm_command(vllm_executable(), model_dir, name=name, dtype=dtype, host=host, port=port,
                               api_key=api_key)
        click.echo(f"serving {model_dir} as {name} through vLLM on http://{host}:{port}/v1", err=True)
        os.execv(command[0], command)  # does not return
    if engine_name == "llama.cpp":
        gguf = gguf_to_serve(run_dir, configuration, model_spec)
        click.echo(f"serving {gguf} through llama.cpp's server on http://{host}:{port}/v1", err=True)
        serve_with_llama_cpp(gguf, host=host, port=port, api_key=api_key)  # does not return
    served = (served_from_run(run_dir, configuration, device=device) if run_dir is not None
              else served_from_spec(model_spec, device=device, dtype=dtype))
    served.limits = replace(served.limits, max_concurrent=max_concurrent, drain_seconds=drain_seconds)
    traces = (TraceStore(traces_path, keep_text=trace_text, scrub=not no_scrub, max_traces=max_traces)
              if traces_path is not None else None)
    click.echo(f"serving {served.name} on http://{host}:{sock.getsockname()[1]}/v1 (metrics at /metrics"
               + (f", traces in {traces_path}" if traces else "") + ")", err=True)
    serve(served, sock, api_key=api_key, traces=traces)


def _check_trace_options(engine_name: str, traces_path: Path | None, trace_text: bool, no_scrub: bool) -> None:
    if traces_path is not None and engine_name != "in-process":
        raise DomainbenchError(f"serve --traces: only the in-process engine records traces; --engine {engine_name} "
                               "hands the port to another server")
    if trace_text and traces_path is None:
        raise DomainbenchError("serve --trace-text: keeps text in the trace store; give --traces PATH too")
    if no_scrub and not trace_text:
        raise DomainbenchError("serve --no-scrub: only text is scrubbed; it goes with --trace-text")


COMMANDS: list = [serve_command]
