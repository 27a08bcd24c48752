"""What `suite new` writes for people: suite.yaml (with commented labelled-task examples) and the data card."""

from __future__ import annotations

import json
from collections import Counter

from tasks.documents.clean import DROP_REASONS
from tasks.documents.options import BuildStats, SuiteOptions

TERMS_SHOWN = 60
UNREADABLE_SHOWN = 20
FOLDERS_SHOWN = 15
BOILERPLATE_SHOWN = 5

_TASKS = {
    "perplexity": """\
  - name: perplexity
    type: perplexity
    description: Held-out documents' text (the first {chars} characters of each).
    data: {data}
    metrics: [token_perplexity, word_perplexity, bits_per_byte]
    rag: off
""",
    "term-cloze": """\
  - name: term-cloze
    type: multiple_choice
    description: A held-out sentence with its domain term masked, the term among {wrong} other domain terms.
    data: {data}
    template: "{{text}}"
    metrics: [accuracy, accuracy_norm]
    rag: exclude-source       # the sentence's own document holds the term: never retrieved
""",
    "known-item": """\
  - name: known-item
    type: multiple_choice
    description: Which document a held-out sentence comes from (its title among {wrong} others); with rag, the sentence must retrieve its own document (recall@k, MRR).
    data: {data}
    template: "Passage: {{text}}\\nThe passage is from the document titled:"
    metrics: [accuracy, accuracy_norm]
    rag: on                   # finding the document is the task
""",
}

_LABELLED_EXAMPLES = """\
# Labelled tasks are added by hand: put JSONL files beside this one and uncomment an entry.
# `domainbench suite validate <this folder>` checks every row; `suite check-leakage` the splits.
#
#  - name: qa                 # rows: {"id": "q1", "question": "…", "answers": ["…"], "source": {"doc_id": "…"}}
#    type: qa
#    data: {train: qa/train.jsonl, test: qa/test.jsonl}
#    template: "Question: {question}\\nAnswer:"
#    num_fewshot: 2
#    generation: {max_new_tokens: 32, stop: ["\\n"]}
#    rag: on                  # knowledge QA: the source document holds the answer
#
#  - name: ner                # rows: {"id": "n1", "text": "…", "entities": [{"start": 0, "end": 4, "type": "TOOL"}]}
#    type: ner
#    data: {train: ner/train.jsonl, test: ner/test.jsonl}
#    labels: [TOOL, PATH, OPTION]
#    num_fewshot: 2
#
#  - name: category           # rows: {"id": "c1", "text": "…", "label": "howto"}
#    type: classification
#    data: {train: category/train.jsonl, test: category/test.jsonl}
#    labels: {howto: " how-to guide", reference: " reference"}
#    template: "Document:\\n{text}\\nThis document is a"
#
#  - name: summarize          # rows: {"id": "s1", "document": "…", "summary": "…", "source": {"doc_id": "…"}}
#    type: summarization
#    data: {train: summarize/train.jsonl, test: summarize/test.jsonl}
#    template: "Document:\\n{document}\\nSummary:"
#    generation: {max_new_tokens: 64, stop: ["\\n\\n"]}
"""


def suite_yaml(options: SuiteOptions, stats: BuildStats) -> str:
    tasks = [task for task, counts in stats.examples.items() if counts.get("test")]
    description = (f"Built by `domainbench suite new` from {stats.kept} documents ({', '.join(map(str, options.docs))}): "
                   "perplexity on held-out documents, domain-term cloze and known-item retrieval.")
    lines = ["# Built by `domainbench suite new`; README.md is the data card (sources, counts, drops, terms).",
             f"name: {json.dumps(options.name)}", f"description: {json.dumps(description)}", "version: 1",
             "corpus: corpus.jsonl.gz", "tasks:"]
    body = "\n".join(lines) + "\n"
    for task in tasks:
        data = "{" + ", ".join(f"{split}: {task}/{split}.jsonl.gz" for split, n in stats.examples[task].items() if n) + "}"
        body += _TASKS[task].format(data=data, chars=options.perplexity_chars, wrong=options.choices - 1) + "\n"
    return body + _LABELLED_EXAMPLES


def data_card(options: SuiteOptions, stats: BuildStats) -> str:
    cleaning = options.cleaning
    sections = [
        f"# {options.name}: data card\n",
        f"Built by `domainbench suite new` in {stats.seconds:.1f} s ({_rate(stats)}; "
        + ", ".join(f"{step} {seconds:.1f} s" for step, seconds in stats.step_seconds.items())
        + f"; {options.workers} workers) from:\n",
        "\n".join(f"- `{path}`" for path in options.docs) + "\n",
        "## Counts after each step\n",
        _table(("step", "documents", "note"), [
            ("files found", stats.collection.files, f"{stats.collection.excluded} excluded by --exclude"),
            ("supported documents", stats.documents + len(stats.collection.unreadable),
             "unsupported: " + (", ".join(f"{suffix} {n}" for suffix, n in stats.collection.unsupported.most_common(8)) or "none")),
            ("read and extracted", stats.documents - len(stats.unreadable) + len(stats.collection.unreadable),
             f"{len(stats.unreadable)} unreadable (below); {stats.repaired} repaired by ftfy; "
             f"decoded as {_counts(stats.decoded_as)}"),
            ("passed the filters", stats.cleaned, f"dropped: {_counts(stats.dropped) or 'none'}"),
            ("after exact de-duplication", stats.cleaned - stats.exact_duplicates, f"{stats.exact_duplicates} exact duplicates"),
            ("after near de-duplication", stats.kept, f"{stats.near_duplicates} near duplicates "
                                                      f"(Jaccard ≥ {options.near_duplicate_threshold}); "
                                                      f"{stats.clusters} clusters in audit/duplicates.jsonl"),
        ]),
        f"Duplicate rate: {_share(stats.exact_duplicates + stats.near_duplicates, stats.cleaned)} of the documents "
        "that passed the filters.\n",
        "## What was dropped and why\n",
        _table(("reason", "documents", "rule (flag, value)", "measured (min · median · max)"),
               [(reason, stats.dropped[reason], _rule(reason, cleaning), _measured(stats.drop_values.get(reason)))
                for reason in DROP_REASONS]),
        "Every drop is listed in `audit/dropped.jsonl` with the value its rule measured. The quality rules "
        "(symbols to duplicated 5-grams) are taken on the prose: fenced code blocks are left out of them.\n",
        _folders(stats),
        _boilerplate(options, stats),
        "PII scrubbing: "
        + (f"on ({_counts(stats.pii) or 'nothing found'} replaced)" if cleaning.scrub_pii else "off (--scrub-pii)") + ".\n",
        _unreadable(stats),
        "## Languages\n",
        "Detected by lingua (low-accuracy mode, first 2,000 characters) on documents that passed the other "
        f"filters: {_counts(stats.languages) or 'none'}. Kept: "
        f"{', '.join(cleaning.languages) if cleaning.languages else 'every language'}.\n",
        "## Splits (by document)\n",
        f"Seeded (seed {options.seed}) hash of the document id, fractions {options.fractions}; near duplicates "
        "are removed before splitting, so none straddles two splits.\n",
        _table(("split", "documents", "characters"),
               [(split, stats.split_documents[split], stats.split_characters[split]) for split in ("train", "dev", "test")]),
        "## Tasks\n",
        _table(("task", "train", "dev", "test", "test examples dropped by the leakage guard"),
               [(task, counts.get("train", "–"), counts.get("dev", "–"), counts.get("test", 0), stats.leaks[task])
                for task, counts in stats.examples.items()]),
        f"Sentences come from the prose (code blocks and headings left out); {stats.templates} template "
        "sentences, held word for word by two or more documents, are neither cloze items nor known-item "
        "queries, and a known-item query never holds its document's title or headings.\n",
        "A task with no test examples is left out of suite.yaml. The leakage guard drops a test example whose "
        "text (an excerpt, a completed cloze sentence, a known-item query) any other document holds, as "
        "whole words with case and punctuation ignored (`audit/leaks.jsonl`).\n",
        "## Domain terms\n",
        f"{len(stats.terms)} terms (`audit/terms.tsv` has all, with counts): words and two-word phrases of the prose (not code, "
        "paths, addresses, template sentences or placeholder names like `foo`) in at least "
        f"{options.min_term_documents} training documents and at least {options.min_term_ratio:g}× as frequent "
        "there as in general English (wordfreq's large English list, floored at 1e-8), ranked by "
        "keyness = documents × ln(p_domain / p_english). Test documents do not contribute.\n",
        ", ".join(f"`{term.term}`" for term in stats.terms[:TERMS_SHOWN]) + ("…" if len(stats.terms) > TERMS_SHOWN else "") + "\n",
    ]
    return "\n".join(sections)


def _measured(values: list | None) -> str:
    """The spread of what a rule measured on the documents it dropped; '–' for none or non-numeric values."""
    numbers = sorted(value for value in values or () if isinstance(value, (int, float)))
    if not numbers:
        return "–"
    return " · ".join(f"{value:g}" for value in (numbers[0], numbers[len(numbers) // 2], numbers[-1]))


def _folders(stats: BuildStats) -> str:
    """Drops by the folder a document sits in: a rule that hits one part of a site shows here."""
    rows = []
    for folder, documents in sorted(stats.folders.items(), key=lambda item: (-item[1], item[0]))[:FOLDERS_SHOWN]:
        drops = Counter({reason: n for (where, reason), n in stats.folder_drops.items() if where == folder})
        rows.append((f"`{folder or '(top)'}`", documents, sum(drops.values()), _counts(drops) or "–"))
    more = len(stats.folders) - FOLDERS_SHOWN
    return ("### Drops by folder\n\n" + _table(("folder", "documents", "dropped", "by reason"), rows)
            + (f"… and {more} more folders (all in `audit/dropped.jsonl`).\n" if more > 0 else ""))


def _boilerplate(options: SuiteOptions, stats: BuildStats) -> str:
    cleaning = options.cleaning
    shown = "".join(f"- {n}× `{line[:80]}`\n" for line, n in stats.boilerplate_lines.most_common(BOILERPLATE_SHOWN))
    return ("### Boilerplate\n\n"
            f"Prose lines held by at least {cleaning.boilerplate_share:g} of the documents (--boilerplate-share) and "
            f"at least {cleaning.boilerplate_min_documents} of them were removed before the filters ran: "
            f"{len(stats.boilerplate_lines)} distinct lines from {stats.boilerplate_documents} documents "
            "(all in `audit/boilerplate.tsv`).\n\n" + shown)


def _unreadable(stats: BuildStats) -> str:
    if not stats.unreadable:
        return "No file was unreadable.\n"
    shown = "\n".join(f"- `{doc_id}`: {reason}" for doc_id, reason in stats.unreadable[:UNREADABLE_SHOWN])
    more = f"\n- … and {len(stats.unreadable) - UNREADABLE_SHOWN} more" if len(stats.unreadable) > UNREADABLE_SHOWN else ""
    return f"Unreadable, reported and skipped ({len(stats.unreadable)}; all in `audit/unreadable.jsonl`):\n\n{shown}{more}\n"


def _rule(reason: str, cleaning) -> str:
    return {
        "empty": "no words",
        "redirect": "a meta-refresh page, or a page of at most 150 words saying it moved (value: target or phrase)",
        "too_short": f"fewer than --min-words {cleaning.min_words}",
        "too_long": f"more than --max-chars {cleaning.max_chars}",
        "symbols": f"symbol share above --max-symbol-share {cleaning.max_symbol_share}",
        "non_words": f"share of words with a letter below --min-word-share {cleaning.min_word_share}",
        "repeated_lines": f"repeated-line share above --max-repeated-lines {cleaning.max_repeated_line_share}",
        "top_bigram": f"top word bigram's character share above --max-top-bigram {cleaning.max_top_bigram_share}",
        "duplicated_5grams": f"duplicated 5-gram character share above --max-duplicated-5grams "
                             f"{cleaning.max_duplicated_5gram_share}",
        "language": f"language not in --languages {','.join(cleaning.languages) or 'any'}",
    }[reason]


def _rate(stats: BuildStats) -> str:
    if not stats.seconds:
        return "no timing"
    return f"{stats.documents / stats.seconds:.1f} documents/s, {stats.bytes_in / 1e6 / stats.seconds:.2f} MB/s read"


def _counts(counter) -> str:
    return ", ".join(f"{key} {n}" for key, n in counter.most_common() if n)


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "0%"


def _table(header: tuple, rows: list[tuple]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
