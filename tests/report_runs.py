"""Run directories built from result files, for the report, compare and leaderboard tests.

The records are scored by the real task types (`tasks.qa`, `tasks.perplexity`) and the metrics
aggregated by them, and each configuration's `cost.training` holds cost blocks with the fields the
tuning and retrieval rooms write, so the files are what `domainbench run` writes.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from reports.schema import ResultFile, result_path, write_result
from retrieval.metrics import judged_retrieval_gold
from tasks import ner, perplexity, qa
from tasks.records import ExampleRecord
from tasks.retrieval_metrics import retrieval_metrics
from tasks.spec import TaskSpec

SCRIPT_OUTPUT = "<script>alert(1)</script><img src=x onerror=alert(2)>"
QA_TASK = TaskSpec(name="errno-qa", type="qa", template="Q: {question}\nA:", data={}, examples={},
                   metrics=("exact_match", "f1"), generation={"max_new_tokens": 8, "stop": ["\n"]})
PPL_TASK = TaskSpec(name="manpage-ppl", type="perplexity", template="{text}", data={}, examples={},
                    metrics=("token_perplexity", "bits_per_byte"))
NER_TASK = TaskSpec(name="ner", type="ner", template="Text: {text}\nEntities:", data={}, examples={},
                    metrics=("precision", "recall", "f1", "f1_per_type"),
                    generation={"max_new_tokens": 64, "stop": ["\n\n"]}, labels=("FUNCTION", "ERRNO"))
ANSWERS = [f"E{n}" for n in range(40)]
NER_TEXT = "open fails with EINVAL"
NER_GOLD = "FUNCTION: open\nERRNO: EINVAL"


def qa_result(run: str, configuration: str, n_correct: int, *, n: int = 40, suite: str = "manpages",
              first_prediction: str | None = None) -> ResultFile:
    """A QA result whose first `n_correct` of `n` examples are answered right."""
    predictions = [ANSWERS[i] if i < n_correct else "wrong answer" for i in range(n)]
    if first_prediction is not None:
        predictions[0] = first_prediction
    return qa_predictions_result(run, configuration, predictions, suite=suite)


def qa_predictions_result(run: str, configuration: str, predictions: list[str], *, suite: str = "manpages",
                          metrics: tuple[str, ...] = QA_TASK.metrics) -> ResultFile:
    """A QA result with these predictions, the i-th one scored against ANSWERS[i]."""
    records = [qa.score_prediction(f"q{i:03d}", prediction, [ANSWERS[i]]) for i, prediction in enumerate(predictions)]
    return _result(run, configuration, dataclasses.replace(QA_TASK, metrics=metrics), qa, records, suite)


def rag_qa_result(run: str, configuration: str, n_correct: int, n_found: int, *, n: int = 40,
                  k: int = 4) -> ResultFile:
    """A retrieval-augmented QA result whose gold page is the top chunk for the first `n_found` examples."""
    result = qa_result(run, configuration, n_correct, n=n)
    records = [ExampleRecord.from_dict(example) for example in result.examples]
    for i, record in enumerate(records):
        gold = f"page{i}"
        documents = [gold if i < n_found and rank == 0 else f"other{rank}" for rank in range(k)]
        record.retrieved = [{"chunk_id": f"{doc}#0", "doc_id": doc, "section": "DESCRIPTION", "score": 1.0 - rank / 10,
                             "prompt_tokens": 40} for rank, doc in enumerate(documents)]
        record.retrieval_gold = judged_retrieval_gold({"doc_id": gold}, k)
    result.examples = [record.as_dict() for record in records]
    result.metrics.update({name: m.as_dict() for name, m in retrieval_metrics(records).items()})
    return result


def ner_result(run: str, configuration: str, outputs: list[str]) -> ResultFile:
    """An NER result on `NER_TEXT` (gold: FUNCTION open, ERRNO EINVAL), one example per model output."""
    example_entities = [{"type": "FUNCTION", "start": 0, "end": 4}, {"type": "ERRNO", "start": 16, "end": 22}]
    records = [ner.score(NER_TASK, {"id": f"n{i:03d}", "text": NER_TEXT, "entities": example_entities}, [output])
               for i, output in enumerate(outputs)]
    return _result(run, configuration, NER_TASK, ner, records, "manpages")


def perplexity_result(run: str, configuration: str, logprob_per_token: float, *, n: int = 20,
                      suite: str = "manpages") -> ResultFile:
    records = [perplexity.ExampleRecord(f"p{i:03d}", None, None,
                                        {"logprob": logprob_per_token * (50 + i), "n_tokens": 50 + i,
                                         "n_words": 30 + i, "n_bytes": 200 + 4 * i})
               for i in range(n)]
    return _result(run, configuration, PPL_TASK, perplexity, records, suite)


def _result(run: str, configuration: str, task: TaskSpec, module, records, suite: str) -> ResultFile:
    metrics = module.aggregate(task, records)
    settings = {"template": task.template, "metrics": list(task.metrics), "generation": task.generation,
                "labels": list(task.labels) if task.labels else None}
    return ResultFile(run=run, configuration=configuration, task=task.name, task_type=task.type,
                      suite={"name": suite, "fingerprint": "f" * 64}, model={"spec": "tiny", "fingerprint": "m",
                                                                            "adapter": None},
                      settings=settings, metrics={name: m.as_dict() for name, m in metrics.items()},
                      cost={"eval_seconds": 0.5 * len(records), "seconds_per_example": 0.5},
                      examples=[r.as_dict() for r in records], versions={"domainbench": "test"})


def training_block(seconds: float, *, purpose: str = "weights", tokens: int = 60000, peak_mb: float = 900.0,
                   trainable: int = 135_000_000, total: int = 135_000_000, size_mb: float = 260.0,
                   convergence: dict | None = None) -> dict:
    """A tuned artifact's cost block as tuning/artifact.py writes it (bytes, tuning's names)."""
    block = {"wall_seconds": seconds, "train_seconds": seconds * 0.9, "tokens_seen": tokens,
             "tokens_per_second": tokens / seconds, "peak_memory_bytes": int(peak_mb * 2**20),
             "peak_memory_kind": "cpu_peak_rss", "trainable_parameters": trainable, "total_parameters": total,
             "processes": 1, "artifact_bytes": int(size_mb * 2**20), "purpose": purpose}
    if convergence is not None:
        block["convergence"] = convergence
    return block


def index_block(seconds: float, *, chunks: int = 1200, size_mb: float = 2.0) -> dict:
    """An index's cost block as run/artifacts.py writes it."""
    return {"wall_seconds": seconds, "chunks": chunks, "chunks_per_second": chunks / seconds, "scope": "test pages",
            "artifact_bytes": int(size_mb * 2**20), "purpose": "index"}


def not_converged(before: float = 2.3, best: float = 2.3, final: float = 5.1) -> dict:
    return {"converged": False, "reason": "dev loss ended above where it started", "dev_loss_before": before,
            "dev_loss_best": best, "dev_loss_final": final, "dev_losses": [[0, before], [10, best], [30, final]]}


def write_run(run_dir: Path, results: list[ResultFile], training: dict[str, dict] | None = None) -> Path:
    """A run directory holding `results`.

    `training` ({configuration: {artifact: cost block}}) goes into each result's `cost.training`
    as the runner writes it ({} for a configuration that needs nothing built); without it the
    results are like `domainbench eval`'s, with no training cost recorded.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "run.yaml").write_text(f"name: {results[0].run}\n", encoding="utf-8")
    for result in results:
        if training is not None:
            result.cost["training"] = training.get(result.configuration, {})
        write_result(result_path(run_dir, result.configuration, result.task), result)
    return run_dir


def standard_run(run_dir: Path, name: str = "nightly", *, adapter_correct: int = 36,
                 adapter_prediction: str | None = None) -> Path:
    """base answers 10/40, adapter `adapter_correct`/40, rag 11/40; adapter also has lower perplexity."""
    results = [qa_result(name, "base", 10), qa_result(name, "adapter", adapter_correct, first_prediction=adapter_prediction),
               qa_result(name, "rag", 11), perplexity_result(name, "base", -2.0), perplexity_result(name, "adapter", -1.5),
               perplexity_result(name, "rag", -2.0)]
    training = {"adapter": {"lora": training_block(120.0, purpose="adapter", tokens=60000, trainable=150000,
                                                    size_mb=0.6)},
                "rag": {"index": index_block(5.0)}}
    return write_run(run_dir, results, training)


def attach_load_test(run_dir: Path, configuration: str, *, p95: float = 0.8, tokens_per_second: float = 120.0,
                     endpoint: str = "http://127.0.0.1:8000/v1", engine: str = "vLLM",
                     served_model: str = "nightly/adapter", rates: tuple[float, float] | None = None) -> Path:
    """A load-test record at concurrency 1 and 8 (or, with `rates`, at those Poisson request rates,
    peaking at 1 and 8 in flight) as `domainbench loadtest --run` writes it; its path."""
    from reports.load_tests import load_test_path

    def level(concurrency: int, scale: float) -> dict:
        return {"concurrency": concurrency, "requests": 32, "errors": concurrency // 8, "error_rate": concurrency / 256,
                "errors_by_kind": {"timeout": 1} if concurrency == 8 else {}, "seconds": 10.0,
                "requests_per_second": 3.1 * concurrency, "output_tokens_per_second": tokens_per_second * scale,
                "latency_p50_seconds": p95 * scale / 2, "latency_p95_seconds": p95 * scale,
                "latency_p99_seconds": p95 * scale * 1.2, "ttft_p50_seconds": 0.05 * scale,
                "ttft_p95_seconds": 0.09 * scale}

    levels = [level(8, 1.0), level(1, 0.25)]
    if rates is not None:
        levels = [{**levels[0], "rate": max(rates), "arrivals": "poisson"},
                  {**levels[1], "rate": min(rates), "arrivals": "poisson"}]

    record = {"kind": "loadtest", "configuration": configuration, "endpoint": endpoint, "served_model": served_model,
              "engine": engine, "server": {"id": served_model, "owned_by": "vllm"}, "suite": "manpages",
              "tasks": None, "max_tokens": 32, "streaming": True, "levels": levels,
              "created": "2025-01-02T03:04:05+0000"}
    path = load_test_path(run_dir, configuration)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record), encoding="utf-8")
    return path
