"""The committed man-pages suite: well-formed, small, split by page, and rebuilt byte for byte."""

from __future__ import annotations

import gzip
import json
import subprocess
from pathlib import Path

import pytest

from tasks.manpages.build import CORPUS_FILE, SUITE_DIR, TASKS, jsonl_line
from tasks.manpages.examples import corpus_record
from tasks.manpages.pages import MAN_PAGES_SOURCE, load_page, page_split
from tasks.manpages.roff import th_fields

MAN_ROOT = Path("/usr/share/man")
# The committed files were rendered by this groff; another version lays text out differently.
BUILT_WITH_GROFF = "1.22.4"
SAMPLE_PAGES = 30


def committed_lines(relative: str) -> list[str]:
    with gzip.open(SUITE_DIR / relative, "rt", encoding="utf-8") as handle:
        return handle.readlines()


def committed_files() -> dict[str, list[str]]:
    files = {CORPUS_FILE: committed_lines(CORPUS_FILE)}
    for name, _, _, splits in TASKS:
        files.update({f"{name}/{split}.jsonl.gz": committed_lines(f"{name}/{split}.jsonl.gz") for split in splits})
    return files


def page_of(record_id: str) -> str:
    return record_id.split("#", 1)[0]


def test_committed_data_is_well_under_20_mb():
    total = sum(path.stat().st_size for path in SUITE_DIR.rglob("*.jsonl.gz"))
    assert total < 20e6 / 4


def test_every_record_sits_in_its_page_split():
    corpus = [json.loads(line) for line in committed_lines(CORPUS_FILE)]
    assert all(record["split"] == page_split(record["id"]) for record in corpus)
    for relative, lines in committed_files().items():
        if relative == CORPUS_FILE:
            continue
        split = relative.rsplit("/", 1)[1].split(".")[0]
        assert all(page_split(page_of(json.loads(line)["id"])) == split for line in lines), relative


def test_ner_offsets_cut_out_the_span_text():
    for line in committed_lines("ner/test.jsonl.gz"):
        example = json.loads(line)
        for entity in example["entities"]:
            span = example["text"][entity["start"]:entity["end"]]
            assert span and span == span.strip(), (example["id"], entity)


def groff_version() -> str:
    """The installed groff's version ("1.22.4"): its rendering details decide the committed text."""
    first = subprocess.run(["groff", "--version"], capture_output=True, text=True, check=True).stdout
    return first.split("\n", 1)[0].rsplit(" ", 1)[-1]


def man_pages_603_reason() -> str | None:
    """Why the rebuild test cannot run here, or None when it can."""
    rename = MAN_ROOT / "man2" / "rename.2.gz"
    if not rename.is_file():
        return f"{rename} is absent: this machine has no Linux man-pages (Debian package manpages-dev)"
    fields = th_fields(gzip.decompress(rename.read_bytes()).decode("utf-8", "replace"))
    if len(fields) < 4 or fields[3] != MAN_PAGES_SOURCE:
        return f"{rename} is not from {MAN_PAGES_SOURCE} (its .TH says {fields[3:4]})"
    try:
        version = groff_version()
    except Exception as exc:  # groff missing entirely: the same skip, with its reason
        return f"groff is not usable: {exc}"
    if version != BUILT_WITH_GROFF:
        return f"groff {version} is not groff {BUILT_WITH_GROFF}, which rendered the committed files"
    return None


@pytest.mark.skipif(man_pages_603_reason() is not None, reason=str(man_pages_603_reason()))
def test_builder_reproduces_committed_records_for_a_sample_of_pages():
    files = committed_files()
    corpus = [json.loads(line) for line in files[CORPUS_FILE]]
    # Every k-th page in path order spreads the sample over all five sections.
    sample = corpus[:: max(1, len(corpus) // SAMPLE_PAGES)][:SAMPLE_PAGES]
    assert len({record["section"] for record in sample}) == 5
    wanted = {record["id"] for record in sample}
    committed: dict[str, dict[str, list[tuple[str, str]]]] = {page_id: {} for page_id in wanted}
    for relative, lines in files.items():
        for line in lines:
            example_id = json.loads(line)["id"]
            if page_of(example_id) in wanted:
                committed[page_of(example_id)].setdefault(relative, []).append((example_id, line))
    for record in sample:
        folder = MAN_ROOT / f"man{record['section']}"
        page = load_page(folder / f"{record['id']}.gz")
        assert page is not None, record["id"]
        rebuilt = {CORPUS_FILE: {page.id: jsonl_line(corpus_record(page))}}
        for name, _, maker, splits in TASKS:
            lines = {example["id"]: jsonl_line(example) for example in maker(page)}
            for split in splits:
                rebuilt[f"{name}/{split}.jsonl.gz"] = lines if page.split == split else {}
        for relative, lines in committed[page.id].items():
            for example_id, line in lines:
                assert rebuilt[relative].get(example_id) == line, (relative, example_id)
