"""What each configuration cost: training from its artifact manifests, evaluation from its results.

The tuning and retrieval rooms write `domainbench_manifest.json` files with a `cost` block; a
composed configuration (`adapter+rag`) may hold several of them under its artifact dir. Every key
is optional: a figure nobody recorded stays None and is shown as "—", never as zero.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

MANIFEST_NAME = "domainbench_manifest.json"
ARTIFACTS_DIR = "artifacts"

# (field, how several manifests of one configuration combine): time, tokens and disk add up;
# peak memory and model size are those of the largest part.
_MANIFEST_FIELDS = {"wall_seconds": sum, "tokens": sum, "peak_memory_mb": max, "trainable_params": sum,
                    "total_params": max, "artifact_mb": sum}


@dataclass
class ConfigurationCost:
    configuration: str
    training_seconds: float | None = None
    tokens: float | None = None
    tokens_per_second: float | None = None
    peak_memory_mb: float | None = None
    trainable_params: float | None = None
    total_params: float | None = None
    artifact_mb: float | None = None
    eval_seconds_per_example: float | None = None
    eval_examples: int = 0

    def as_dict(self) -> dict:
        return asdict(self)

    def compute_seconds(self, n_examples: int) -> float | None:
        """Training plus evaluating `n_examples`: the single cost axis of quality-vs-cost."""
        if self.eval_seconds_per_example is None and self.training_seconds is None:
            return None
        return (self.training_seconds or 0.0) + (self.eval_seconds_per_example or 0.0) * n_examples


def configuration_cost(run_dir: Path, configuration: str, results: list) -> ConfigurationCost:
    """Cost of one configuration from its result files (`ResultFile`s), or its manifests.

    The runner copies the cost block of every artifact a configuration used into each result
    file's `cost.training` ({strategy: cost}), so a report needs only the result files; runs
    made without the runner fall back to the manifests under `artifacts/<configuration>/`.
    """
    cost = ConfigurationCost(configuration)
    recorded = next((r.cost["training"] for r in results if isinstance(r.cost.get("training"), dict)), None)
    if recorded is not None:
        manifests = [_normalised(c) for c in recorded.values() if isinstance(c, dict)]
    else:
        artifact_dir = Path(run_dir) / ARTIFACTS_DIR / configuration
        manifests = [_normalised(_manifest_cost(path)) for path in sorted(artifact_dir.rglob(MANIFEST_NAME))]
    if not manifests:
        # Nothing was trained for this configuration (the base model): no training time was spent.
        cost.training_seconds = 0.0
        cost.trainable_params = 0
    for name, combine in _MANIFEST_FIELDS.items():
        values = [m[name] for m in manifests if isinstance(m.get(name), (int, float))]
        if values:
            setattr(cost, "training_seconds" if name == "wall_seconds" else name, combine(values))
    cost.tokens_per_second = _tokens_per_second(manifests, cost)
    _add_evaluation(cost, results)
    return cost


# tuning/ and retrieval/ record counts and bytes under their own names; the report's fields.
_RENAMED = {"tokens_seen": ("tokens", 1), "trainable_parameters": ("trainable_params", 1),
            "total_parameters": ("total_params", 1), "peak_memory_bytes": ("peak_memory_mb", 2**20),
            "artifact_bytes": ("artifact_mb", 2**20)}


def _normalised(cost: dict) -> dict:
    """A cost block with tuning's field names mapped onto the report's (bytes become MiB)."""
    fresh = dict(cost)
    for name, (report_name, divisor) in _RENAMED.items():
        if isinstance(cost.get(name), (int, float)) and report_name not in cost:
            fresh[report_name] = cost[name] / divisor
    return fresh


def _manifest_cost(path: Path) -> dict:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        # A damaged manifest costs the report its cost figures, not the report itself.
        return {}
    cost = manifest.get("cost") if isinstance(manifest, dict) else None
    return cost if isinstance(cost, dict) else {}


def _tokens_per_second(manifests: list[dict], cost: ConfigurationCost) -> float | None:
    if len(manifests) == 1 and isinstance(manifests[0].get("tokens_per_second"), (int, float)):
        return float(manifests[0]["tokens_per_second"])
    if cost.tokens and cost.training_seconds:
        return cost.tokens / cost.training_seconds
    return None


def _add_evaluation(cost: ConfigurationCost, results: list) -> None:
    seconds, examples = 0.0, 0
    for result in results:
        n = len(result.examples)
        per_example = result.cost.get("seconds_per_example")
        if isinstance(per_example, (int, float)):
            seconds += per_example * n
            examples += n
        elif isinstance(result.cost.get("eval_seconds"), (int, float)) and n:
            seconds += result.cost["eval_seconds"]
            examples += n
    if examples:
        cost.eval_seconds_per_example = seconds / examples
        cost.eval_examples = examples
