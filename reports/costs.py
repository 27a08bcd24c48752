"""What each configuration cost, itemised: every artifact it needs, and their total.

The runner copies the cost block of every artifact a configuration used into each of its result
files (`cost.training`, {artifact: block}): tuned weights, an adapter, an index, for `distilled`
also its teacher, and for a variant (`adapter@rc`) the making of its augmented training data —
mining or generation time, the generator's tokens, the training tokens it added — with the path
of its data card. A configuration's total sums the time and disk of its items; peak
memory is per item, and the total shows the largest (items ran one after another, never at once);
throughput is per item, in its own unit (tokens/s for training, chunks/s for an index), because a
sum of tokens over a sum of seconds that include indexing means nothing.

Every key is optional: a figure nobody recorded stays None and is shown as "—", never as zero.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

MIB = 2**20
INDEX = "index"
AUGMENTATION = "augmentation"


@dataclass
class CostItem:
    """One artifact a configuration needs, and what building it cost."""

    name: str                      # the artifact: "full", "distill", "lora", "index", …
    purpose: str | None            # "weights", "adapter", "teacher", "index" or "augmentation"; None in older results
    seconds: float | None = None
    tokens_per_second: float | None = None   # training items only
    chunks_per_second: float | None = None   # index items only
    peak_memory_mb: float | None = None
    peak_memory_kind: str | None = None      # "cuda_max_allocated", "cpu_max_rss", …
    trainable_params: float | None = None
    total_params: float | None = None
    artifact_mb: float | None = None
    detail: str | None = None                # what an augmentation did: method, tokens generated and added
    data_card: str | None = None             # an augmentation's data card, relative to the run dir

    @property
    def is_index(self) -> bool:
        return self.purpose == INDEX

    @property
    def label(self) -> str:
        if self.purpose in (None, self.name):
            return self.name
        return f"{self.name} ({self.purpose}: {self.detail})" if self.detail else f"{self.name} ({self.purpose})"


@dataclass
class ConfigurationCost:
    configuration: str
    items: list[CostItem] | None = None  # None: the results do not say what was built (not a `run`)
    training_seconds: float | None = None
    peak_memory_mb: float | None = None  # the largest item's
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


def configuration_cost(configuration: str, results: list) -> ConfigurationCost:
    """Cost of one configuration from its result files (`ResultFile`s).

    Results made without the runner (`domainbench eval`) carry no `cost.training`: what was built
    for them is unknown, so only the evaluation cost is shown.
    """
    cost = ConfigurationCost(configuration)
    recorded = training_blocks(results)
    if recorded is not None:
        cost.items = [cost_item(name, block) for name, block in recorded.items()]
        _add_totals(cost, cost.items)
    _add_evaluation(cost, results)
    return cost


def data_cards(costs: dict[str, ConfigurationCost]) -> list[tuple[str, CostItem]]:
    """(configuration, augmentation item) for every item with a data card, in configuration order."""
    return [(configuration, item) for configuration, cost in costs.items() for item in cost.items or ()
            if item.data_card]


def training_blocks(results: list) -> dict[str, dict] | None:
    """{artifact: cost block} as the runner recorded it for a configuration, None if it did not."""
    recorded = next((r.cost["training"] for r in results if isinstance(r.cost.get("training"), dict)), None)
    if recorded is None:
        return None
    return {name: block for name, block in recorded.items() if isinstance(block, dict)}


def cost_item(name: str, block: dict) -> CostItem:
    """A cost block (tuning's or retrieval's field names, bytes) as a report item (MiB)."""
    purpose = block.get("purpose") if isinstance(block.get("purpose"), str) else None
    if purpose is None and "chunks" in block:
        purpose = INDEX  # results written before blocks named their purpose
    item = CostItem(name, purpose, seconds=_number(block, "wall_seconds"), peak_memory_mb=_mib(block, "peak_memory_bytes"),
                    trainable_params=_number(block, "trainable_parameters"),
                    total_params=_number(block, "total_parameters"), artifact_mb=_mib(block, "artifact_bytes"))
    item.peak_memory_kind = block.get("peak_memory_kind") if item.peak_memory_mb is not None else None
    if item.is_index:
        item.chunks_per_second = _number(block, "chunks_per_second")
    elif purpose == AUGMENTATION:
        _add_augmentation(item, block)
    else:
        item.tokens_per_second = _number(block, "tokens_per_second")
    return item


def _add_augmentation(item: CostItem, block: dict) -> None:
    """An augmentation's figures: the generator's tokens/s as its throughput, the rest in words."""
    added = _number(block, "added_train_tokens")
    parts = [str(block.get("method") or "augmented data")]
    generator = block.get("generator") if isinstance(block.get("generator"), dict) else None
    if generator is not None:
        tokens, seconds = _number(generator, "generated_tokens"), _number(generator, "generation_seconds")
        if tokens is not None and seconds:
            item.tokens_per_second = tokens / seconds
        generated = "tokens not counted" if tokens is None else f"{tokens:,.0f} tokens"
        parts.append(f"generator on {generator.get('device') or '?'} wrote {generated} in {seconds or 0:.1f} s")
        if _number(generator, "reused_outputs"):
            parts.append(f"{generator['reused_outputs']:,} outputs reused from an earlier build")
    if added is not None:
        parts.append(f"{added:+,.0f} training tokens")
    item.detail = ", ".join(parts)
    item.data_card = block.get("data_card") if isinstance(block.get("data_card"), str) else None


def _number(block: dict, key: str) -> float | None:
    value = block.get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _mib(block: dict, key: str) -> float | None:
    value = _number(block, key)
    return None if value is None else value / MIB


def _add_totals(cost: ConfigurationCost, items: list[CostItem]) -> None:
    """Time, trained parameters and disk add up; peak memory and total parameters are the largest item's."""
    for name, combine in (("training_seconds", sum), ("trainable_params", sum), ("artifact_mb", sum),
                          ("peak_memory_mb", max), ("total_params", max)):
        attribute = "seconds" if name == "training_seconds" else name
        values = [getattr(item, attribute) for item in items if getattr(item, attribute) is not None]
        if values:
            setattr(cost, name, combine(values))
    if not items:
        # Nothing was built for this configuration (the base model): no training time was spent.
        cost.training_seconds, cost.trainable_params = 0.0, 0


def _add_evaluation(cost: ConfigurationCost, results: list) -> None:
    seconds, examples = 0.0, 0
    for result in results:
        n = len(result.examples)
        per_example = result.cost.get("seconds_per_example")
        if isinstance(per_example, (int, float)):
            seconds += per_example * n
            examples += n
    if examples:
        cost.eval_seconds_per_example = seconds / examples
        cost.eval_examples = examples
