"""Run directories built from result files, for the report, compare and leaderboard tests.

The records are scored by the real task types (`tasks.qa`, `tasks.perplexity`) and the metrics
aggregated by them, so the files are what an evaluation writes.
"""

from __future__ import annotations

import json
from pathlib import Path

from reports.schema import ResultFile, result_path, write_result
from tasks import perplexity, qa
from tasks.suite import TaskSpec

SCRIPT_OUTPUT = "<script>alert(1)</script><img src=x onerror=alert(2)>"
QA_TASK = TaskSpec(name="errno-qa", type="qa", template="Q: {question}\nA:", data={}, examples={},
                   metrics=("exact_match", "f1"), generation={"max_new_tokens": 8, "stop": ["\n"]})
PPL_TASK = TaskSpec(name="manpage-ppl", type="perplexity", template="{text}", data={}, examples={},
                    metrics=("token_perplexity", "bits_per_byte"))
ANSWERS = [f"E{n}" for n in range(40)]


def qa_result(run: str, configuration: str, n_correct: int, *, n: int = 40, suite: str = "manpages",
              first_prediction: str | None = None) -> ResultFile:
    """A QA result whose first `n_correct` of `n` examples are answered right."""
    records = []
    for i in range(n):
        prediction = ANSWERS[i] if i < n_correct else "wrong answer"
        if i == 0 and first_prediction is not None:
            prediction = first_prediction
        records.append(qa.score_prediction(f"q{i:03d}", prediction, [ANSWERS[i]]))
    return _result(run, configuration, QA_TASK, qa, records, suite)


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
                "labels": None}
    return ResultFile(run=run, configuration=configuration, task=task.name, task_type=task.type,
                      suite={"name": suite, "fingerprint": "f" * 64}, model={"spec": "tiny", "fingerprint": "m",
                                                                            "adapter": None},
                      settings=settings, metrics={name: m.as_dict() for name, m in metrics.items()},
                      cost={"eval_seconds": 0.5 * len(records), "seconds_per_example": 0.5},
                      examples=[r.as_dict() for r in records], versions={"domainbench": "test"})


def write_run(run_dir: Path, results: list[ResultFile], manifests: dict[str, dict] | None = None) -> Path:
    """A run directory holding `results`, plus `domainbench_manifest.json` costs per configuration."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "run.yaml").write_text(f"name: {results[0].run}\n", encoding="utf-8")
    for result in results:
        write_result(result_path(run_dir, result.configuration, result.task), result)
    for configuration, cost in (manifests or {}).items():
        artifact_dir = run_dir / "artifacts" / configuration
        artifact_dir.mkdir(parents=True, exist_ok=True)
        (artifact_dir / "domainbench_manifest.json").write_text(json.dumps({"cost": cost}), encoding="utf-8")
    return run_dir


def standard_run(run_dir: Path, name: str = "nightly", *, adapter_correct: int = 36,
                 adapter_prediction: str | None = None) -> Path:
    """base answers 10/40, adapter `adapter_correct`/40, rag 11/40; adapter also has lower perplexity."""
    results = [qa_result(name, "base", 10), qa_result(name, "adapter", adapter_correct, first_prediction=adapter_prediction),
               qa_result(name, "rag", 11), perplexity_result(name, "base", -2.0), perplexity_result(name, "adapter", -1.5),
               perplexity_result(name, "rag", -2.0)]
    manifests = {"adapter": {"wall_seconds": 120.0, "tokens": 60000, "tokens_per_second": 500.0,
                             "peak_memory_mb": 900.0, "trainable_params": 150000, "total_params": 135000000,
                             "artifact_mb": 0.6},
                 "rag": {"wall_seconds": 5.0, "artifact_mb": 2.0}}
    return write_run(run_dir, results, manifests)
