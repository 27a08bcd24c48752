"""A small suite for the augmentation tests: a QA and an NER task, and a corpus of man-page-like prose.

Every test example and every test corpus record holds SENTINEL, so a test can show that no
augmentation is handed (or writes) test-split text. PLANTED_QUESTION is one test question, long
enough (20 words) that a copy keeps a 13-word run through a perturbation.
"""

from __future__ import annotations

import gzip
import json

SENTINEL = "zebrafishsentinel"
PLANTED_QUESTION = (f"Which errno does {SENTINEL}() return when the caller passes a descriptor that refers to a "
                    "socket and not to a regular file?")
FUNCTIONS = ["fsyncat", "readvex", "pwritez", "mkfifoz", "linkatz", "statxz", "pollz", "dupz", "chmodz", "umaskz"]
ERRNOS = ["EINVAL", "ENOENT", "EACCES", "EEXIST", "EINTR"]


def page_text(function: str) -> str:
    """Prose with connectives, a cause and domain terms, as reading comprehension mines them."""
    return (f"NAME\n       {function} - flush buffered descriptor data to the storage device\n\n"
            "DESCRIPTION\n"
            f"       The {function}() system call transfers the buffered data of the descriptor to the storage "
            "device of the filesystem. Therefore, the data survives a crash of the kernel after the call returns "
            f"successfully. However, the metadata of the directory entry is not always flushed by {function}() "
            "on every filesystem. The call blocks for a long time because the kernel waits for the write barrier "
            "of the storage device. In other words, the caller cannot continue until the storage device reports "
            f"completion. The errno value EINVAL is set when the descriptor of {function}() refers to a socket or "
            "a pipe.\n\n"
            "RETURN VALUE\n       On success, zero is returned. On error, -1 is returned and errno is set.\n")


def write_augment_suite(root, *, n_train: int = 8, extra_train_questions: tuple[str, ...] = ()):
    """Write the suite under `root` and return it loaded."""
    from tasks.suite import load_suite

    def qa_rows(split: str, count: int) -> list[dict]:
        tag = f" {SENTINEL}" if split == "test" else ""
        return [{"id": f"{split}-{i}", "question": f"Which errno does {FUNCTIONS[i % len(FUNCTIONS)]}(){tag} return "
                                                  f"for a bad descriptor in case {i}?",
                 "answers": [ERRNOS[i % len(ERRNOS)]]} for i in range(count)]

    qa = {"train": qa_rows("train", n_train), "dev": qa_rows("dev", 3), "test": qa_rows("test", 4)}
    qa["train"] += [{"id": f"train-extra-{i}", "question": question, "answers": ["ENOTSUP"]}
                    for i, question in enumerate(extra_train_questions)]
    qa["test"].append({"id": "test-planted", "question": PLANTED_QUESTION, "answers": ["ESPIPE"]})
    def ner_rows(split: str) -> list[dict]:
        tag = f" {SENTINEL}" if split == "test" else ""
        return [{"id": f"{split}-{i}", "text": f"{FUNCTIONS[i]}() fails with EINVAL{tag}.",
                 "entities": [{"type": "FUNCTION", "start": 0, "end": len(FUNCTIONS[i]) + 2}]} for i in range(3)]

    ner = {split: ner_rows(split) for split in ("train", "test")}
    for task, splits in (("qa", qa), ("ner", ner)):
        (root / task).mkdir(parents=True)
        for split, rows in splits.items():
            (root / task / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (root / "suite.yaml").write_text(
        "name: augment-tiny\nversion: 1\ncorpus: corpus.jsonl.gz\ntasks:\n"
        "  - name: errno-qa\n    type: qa\n    data: {train: qa/train.jsonl, dev: qa/dev.jsonl, test: qa/test.jsonl}\n"
        "    template: \"Question: {question}\\nAnswer:\"\n    metrics: [exact_match]\n"
        "    generation: {max_new_tokens: 8, stop: [\"\\n\"]}\n"
        "  - name: ner\n    type: ner\n    data: {train: ner/train.jsonl, test: ner/test.jsonl}\n"
        "    template: \"Text: {text}\\nEntities:\"\n    labels: [FUNCTION]\n"
        "    generation: {max_new_tokens: 16, stop: [\"\\n\\n\"]}\n")
    records = [{"id": f"{name}.2", "title": f"{name}(2)", "section": "2", "split": "train", "text": page_text(name)}
               for name in FUNCTIONS[:n_train]]
    records += [{"id": "dev.2", "title": "devz(2)", "section": "2", "split": "dev", "text": page_text("devz")},
                {"id": "test.2", "title": f"{SENTINEL}(2)", "section": "2", "split": "test",
                 "text": page_text(SENTINEL)}]
    with gzip.open(root / "corpus.jsonl.gz", "wt") as handle:
        handle.writelines(json.dumps(record) + "\n" for record in records)
    return load_suite(root)
