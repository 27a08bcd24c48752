"""What retrieval may show each task's examples: the leakage rule for the knowledge base.

A suite task says it with `rag:` in suite.yaml (its task type's `DEFAULT_RAG` when it does not):

- `on` — the query searches the whole knowledge base. For knowledge QA (errno-qa): the gold
  evidence is the example's source page, and finding it *is* the task.
- `exclude-source` — the example's own source document (`source.doc_id`) is never retrieved, nor
  any other passage that quotes its free-text reference word for word (the type's
  `QUOTABLE_REFERENCE`: a summary; other labels — a class, entity offsets, a closed-vocabulary
  answer — reach the model only through the source document itself). For tasks whose label comes
  with the document the example was built from: a page's section, its NAME line.
- `off` — the task is evaluated without retrieval, even in a `+rag` configuration.

`exclude-source` needs every evaluated example to name its source document; an example that does
not is refused before any work starts, since retrieval could not keep its own page away.
"""

from __future__ import annotations

from harness.errors import DomainbenchError
from retrieval.matching import Exclusion
from retrieval.metrics import gold_documents
from tasks.registry import task_module

RAG_MODES = ("on", "exclude-source", "off")


def rag_mode(value, task_type: str):
    """The mode suite.yaml's `rag:` names (its default when absent); YAML 1.1 reads bare on/off as booleans."""
    if value is None:
        return task_module(task_type).DEFAULT_RAG
    if isinstance(value, bool):
        return "on" if value else "off"
    return value


def exclusion(task, example: dict) -> Exclusion | None:
    """What retrieval must skip for `example` under its task's mode (None: nothing)."""
    if task.rag != "exclude-source":
        return None
    field = task_module(task.type).QUOTABLE_REFERENCE
    phrases = (example[field],) if field and isinstance(example.get(field), str) else ()
    return Exclusion(doc_ids=frozenset(gold_documents(example.get("source"))), phrases=phrases)


def judges_retrieval(task) -> bool:
    """Whether recall@k / MRR against the source document mean anything for this task.

    Only with `on`: under `exclude-source` the source is never retrieved by construction.
    """
    return task.rag == "on"


def check_rag_ready(task, examples: list[dict]) -> None:
    """Refuse a retrieval-augmented evaluation of `examples` that could not honour the task's mode."""
    if task.rag != "exclude-source":
        return
    missing = [example["id"] for example in examples if not gold_documents(example.get("source"))]
    if missing:
        raise DomainbenchError(
            f"task {task.name}: rag: exclude-source needs source.doc_id on every example, and "
            f"{len(missing)} have none (first: {missing[0]!r}); add `source: {{doc_id: …}}` to the examples, or set "
            "`rag: on` (retrieval may return the example's own document) or `rag: off` in suite.yaml")
