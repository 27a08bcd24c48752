"""`suite new` on a generated mdBook-like documentation site (tests/docsite.py): code-heavy pages
kept, stubs and redirects dropped with their reason, navigation overlays and hidden code lines
gone, headings as titles, and known-item and cloze examples that test knowledge."""

import gzip
import json
from pathlib import Path

import pytest

from cli.main import main
from retrieval.matching import contains_phrase
from tasks.documents.extract import extract
from tests.docsite import HELP_OVERLAY, HIDDEN_LINES, RETIRED_SENTENCE, write_docsite


def read_jsonl(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    return write_docsite(tmp_path_factory.mktemp("docsite"))


@pytest.fixture(scope="module")
def built(site, tmp_path_factory):
    out = tmp_path_factory.mktemp("suites") / "frob"
    main(["suite", "new", "frob", "--docs", str(site.root), "--out", str(out), "--workers", "1",
          "--split", "0.4,0.3,0.3", "--min-term-docs", "2"])
    return out


@pytest.fixture(scope="module")
def corpus(built):
    return {record["id"]: record for record in read_jsonl(built / "corpus.jsonl.gz")}


def test_code_heavy_pages_are_kept(site, corpus):
    assert site.code_heavy and set(site.code_heavy) <= corpus.keys()
    assert {page.doc_id for page in site.errors} <= corpus.keys()


def test_redirects_and_old_link_stubs_are_dropped_with_what_gave_them_away(site, built, corpus):
    dropped = {row["id"]: row for row in read_jsonl(built / "audit" / "dropped.jsonl")}
    assert set(dropped) == set(site.stubs) and not set(site.stubs) & corpus.keys()
    assert {row["reason"] for row in dropped.values()} == {"redirect"}
    assert dropped["site/redirects/ch01-ownership.html"]["value"] == "../book/ch01-ownership.html"
    assert dropped["site/first-edition/ch04-closures.html"]["value"] == "This is an old link"
    assert dropped["site/redirects/ch01-ownership.html"]["folder"] == "redirects"


def test_the_card_breaks_drops_down_by_folder(built):
    card = (built / "README.md").read_text()
    assert "| `redirects` | 3 | 3 | redirect 3 |" in card
    assert "| `error_codes` | 21 | 0 | – |" in card


def test_the_help_overlay_on_every_page_is_removed_as_boilerplate(built, corpus):
    assert not any(line in record["text"] for record in corpus.values() for line in HELP_OVERLAY)
    removed = (built / "audit" / "boilerplate.tsv").read_text()
    assert all(line in removed for line in HELP_OVERLAY)


def test_hidden_code_lines_are_not_extracted_and_code_blocks_stay_apart(site, corpus):
    texts = [record["text"] for record in corpus.values()]
    assert not any(hidden in text for text in texts for hidden in HIDDEN_LINES)
    page = corpus[site.errors[0].doc_id]["text"]
    assert page.count("```") == 4                      # the erroneous and the fixed example, each fenced
    assert "let value_0 = compute_" in page


def test_the_heading_is_the_title_and_not_glued_to_the_first_sentence(site, corpus):
    page = site.errors[0]
    record = corpus[page.doc_id]
    assert record["title"] == page.code
    assert record["text"].split("\n")[:2] == [f"# {page.code}", page.first_sentence]
    assert corpus["site/book/ch02-borrowing.html"]["title"] == "Borrowing"   # not the menu bar's book name


def test_html_extraction_marks_code_and_headings(site):
    extracted = extract((site.root / "book" / "ch01-ownership.html").read_bytes(), "html")
    assert extracted.title == "Ownership" and extracted.text.startswith("# Ownership\n")
    assert "```\n    let value_0" in extracted.text
    redirect = extract((site.root / "redirects" / "ch01-ownership.html").read_bytes(), "html")
    assert redirect.redirect == "../book/ch01-ownership.html" and redirect.text == ""


def test_known_item_queries_never_name_their_document(built, corpus):
    from tasks.documents.layout import headings

    for split in ("train", "dev", "test"):
        for example in read_jsonl(built / "known-item" / f"{split}.jsonl.gz"):
            record = corpus[example["source"]["doc_id"]]
            for name in [record["title"], *headings(record["text"])]:
                assert not contains_phrase(example["text"], name), (example["text"], name)


def test_template_sentences_are_neither_queries_nor_cloze_items(site, built):
    assert len(site.retired) >= 2                     # the template is on several pages
    rows = [row for task in ("known-item", "term-cloze") for split in ("train", "dev", "test")
            if (path := built / task / f"{split}.jsonl.gz").exists() for row in read_jsonl(path)]
    assert rows
    retired = {row["id"] for row in rows if RETIRED_SENTENCE.split(" no longer")[0] in row["text"]}
    assert retired == set()
    assert "emitted" not in (built / "audit" / "terms.tsv").read_text()
