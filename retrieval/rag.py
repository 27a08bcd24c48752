"""Retrieval-augmented prompts: retrieved passages placed before a task prompt, within a budget.

The knowledge base is a suite's corpus (the documentation a model may look up at test time),
test documents included: for knowledge QA, finding the page that answers the question is the
task. What a query may retrieve is the task's to say (`tasks.rag_policy`): for every other task
the example's own source document, and any passage quoting its reference, is excluded
(`Exclusion`), so no test label reaches the model through a passage.

The budget is counted with the *language model's* tokenizer, without special tokens. When the k
passages do not all fit, the budget is shared out by water-filling: passages shorter than an equal
share go in whole and the rest are cut to the share, so a gold page at rank 4 still reaches the
prompt instead of getting 0 tokens. Only when the share would fall under MIN_PASSAGE_TOKENS are
passages dropped, lowest rank first. The task prompt — question, few-shot exemplars and all — is
never cut: when it alone exceeds the budget it is returned without passages.
"""

from __future__ import annotations

from engines.tokens import count_tokens
from harness.errors import DomainbenchError
from retrieval.chunking import compact_whitespace
from retrieval.matching import Exclusion
from retrieval.retriever import Hit, Retriever

DEFAULT_K = 4
DEFAULT_CONTEXT_BUDGET = 1024
DEFAULT_TEMPLATE = "Reference documentation:\n\n{passages}\n\n{prompt}"
PASSAGE_TEMPLATE = "[{rank}] {heading}\n{text}"
PASSAGE_SEPARATOR = "\n\n"
# A passage cut shorter than this tells the model nothing; the tokens are better left unused.
MIN_PASSAGE_TOKENS = 16


def rag_settings_problems(*, retrieval: str, kind: str, encoder: str) -> list[str]:
    """A run spec's `rag:` settings this room cannot honour, one line each, found without loading a model."""
    from retrieval.bm25 import RETRIEVAL_MODES
    from retrieval.embedding import resolve_encoder
    from retrieval.index import INDEX_KINDS

    problems = []
    if retrieval not in RETRIEVAL_MODES:
        problems.append(f"rag.retrieval: {retrieval!r} is not a retrieval mode (expected one of "
                        f"{', '.join(RETRIEVAL_MODES)})")
    if kind not in INDEX_KINDS:
        problems.append(f"rag.kind: {kind!r} is not an index kind (expected one of {', '.join(INDEX_KINDS)})")
    try:
        resolve_encoder(encoder)  # finds the encoder's directory without loading the model
    except DomainbenchError as exc:
        problems.append(f"rag.encoder: {exc}")
    return problems


class RagAugmenter:
    """Prepend the k chunks retrieved for a query to a prompt, fitting `context_budget_tokens`."""

    def __init__(self, retriever: Retriever, tokenizer, *, k: int = DEFAULT_K,
                 context_budget_tokens: int = DEFAULT_CONTEXT_BUDGET, template: str = DEFAULT_TEMPLATE):
        if "{passages}" not in template or "{prompt}" not in template:
            raise DomainbenchError(f"RAG template {template!r}: needs both {{passages}} and {{prompt}}")
        if k < 1:
            raise DomainbenchError(f"RAG k={k}: expected at least 1 passage")
        self.retriever = retriever
        self.tokenizer = tokenizer
        self.k = k
        self.context_budget_tokens = context_budget_tokens
        self.template = template

    def settings(self) -> dict:
        """What a result file records about the augmentation."""
        return {"k": self.k, "context_budget_tokens": self.context_budget_tokens, "template": self.template,
                "retrieval": getattr(self.retriever, "mode", "dense"), "index": str(self.retriever.index.path),
                "index_scope": self.retriever.index.manifest.get("scope", "whole corpus"),
                "index_fingerprint": self.retriever.index.manifest["input_hash"]}

    def augment(self, query: str, prompt: str, *, exclude: Exclusion | None = None) -> tuple[str, list[dict]]:
        """The prompt with passages before it, and one record per retrieved chunk (best first).

        Records are `{chunk_id, doc_id, section, score, prompt_tokens}`; `prompt_tokens` is how
        much of the chunk made it into the prompt (0: it did not fit). `exclude` names the
        chunks this query may not see; the k passages are the best of the others.
        """
        return self.fit(prompt, self.retriever.search(query, self.k, exclude=exclude))

    def fit(self, prompt: str, hits: list[Hit]) -> tuple[str, list[dict]]:
        """Place `hits` before `prompt` within the budget."""
        available = self.context_budget_tokens - self._count(self.template.format(passages="", prompt=prompt))
        augmented, texts = self._assemble(prompt, hits, self._passage_texts(hits, available))
        records = [{**hit.record(), "prompt_tokens": self._count(texts[i]) if i < len(texts) else 0}
                   for i, hit in enumerate(hits)]
        return augmented, records

    def _passage_texts(self, hits: list[Hit], available: int) -> list[str]:
        """Chunk texts (indentation dropped) in rank order, each within its water-filled share of the budget."""
        wholes = [compact_whitespace(hit.text) for hit in hits]
        lengths = [self._count(text) for text in wholes]
        headers = [self._count(PASSAGE_TEMPLATE.format(rank=rank, heading=_heading(hit), text="") + PASSAGE_SEPARATOR)
                   for rank, hit in enumerate(hits, start=1)]
        for kept in range(len(hits), 0, -1):
            shares = water_fill(lengths[:kept], available - sum(headers[:kept]))
            if all(share >= min(MIN_PASSAGE_TOKENS, length) for share, length in zip(shares, lengths)):
                return [self._truncated(text, share)[0] for text, share in zip(wholes, shares)]
        return []

    def _assemble(self, prompt: str, hits: list[Hit], texts: list[str]) -> tuple[str, list[str]]:
        # Token counts of the pieces do not add up exactly (merges across a boundary), so the
        # whole is counted and the last passage shortened until it fits.
        while True:
            augmented = self._render(prompt, hits, texts)
            overflow = self._count(augmented) - self.context_budget_tokens
            if overflow <= 0 or not texts:
                return augmented, texts
            text, n_tokens = self._truncated(texts[-1], self._count(texts[-1]) - overflow)
            keep = n_tokens >= MIN_PASSAGE_TOKENS and len(text) < len(texts[-1])
            texts = texts[:-1] + ([text] if keep else [])

    def _render(self, prompt: str, hits: list[Hit], texts: list[str]) -> str:
        if not texts:
            return prompt
        passages = [PASSAGE_TEMPLATE.format(rank=rank, heading=_heading(hit), text=text)
                    for rank, (hit, text) in enumerate(zip(hits, texts), start=1)]
        return self.template.format(passages=PASSAGE_SEPARATOR.join(passages), prompt=prompt)

    def _truncated(self, text: str, max_tokens: int) -> tuple[str, int]:
        """The longest prefix of `text` within max_tokens, cut at a token boundary, and its length."""
        if max_tokens <= 0:
            return "", 0
        offsets = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        if len(offsets) <= max_tokens:
            return text, len(offsets)
        return text[:offsets[max_tokens - 1][1]].rstrip(), max_tokens

    def _count(self, text: str) -> int:
        return count_tokens(self.tokenizer, text)


def water_fill(lengths: list[int], budget: int) -> list[int]:
    """Token shares of `budget` for texts of `lengths`: an equal share each, a shorter text keeping only what it needs."""
    shares = [0] * len(lengths)
    remaining = max(budget, 0)
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    for position, index in enumerate(order):
        fair = remaining // (len(order) - position)
        shares[index] = min(lengths[index], fair)
        remaining -= shares[index]
    return shares


def _heading(hit: Hit) -> str:
    return " — ".join(part for part in (hit.title, hit.section) if part)
