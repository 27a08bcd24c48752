"""Corpus reading and chunking: offsets, sections, token budget, overlap, and bad input."""

from __future__ import annotations

import gzip
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from retrieval_fakes import minilm_tokenizer, sample_documents

from harness.errors import DomainbenchError
from retrieval.chunking import ChunkingSettings, chunk_document, token_windows
from retrieval.corpus import Document, corpus_fingerprint, load_corpus


@pytest.fixture(scope="module")
def tokenizer():
    return minilm_tokenizer()


def _n_tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def _long_document() -> Document:
    paragraphs = [f"Paragraph {i} explains flag FLAG_{i}. " + "The kernel then reads the data. " * 8
                  for i in range(12)]
    return Document(doc_id="long", title="long(7)", text="DESCRIPTION\n       " + "\n\n       ".join(paragraphs) + "\n")


def test_chunk_offsets_slice_the_document_text(tokenizer):
    for document in [*sample_documents(), _long_document()]:
        for chunk in chunk_document(document, tokenizer, ChunkingSettings(max_tokens=40, overlap_tokens=8)):
            assert document.text[chunk.start:chunk.end] == chunk.text
            assert chunk.doc_id == document.doc_id


def test_chunks_follow_man_page_sections(tokenizer):
    rename = sample_documents()[0]
    chunks = chunk_document(rename, tokenizer, ChunkingSettings(max_tokens=200, overlap_tokens=0))
    assert [chunk.section for chunk in chunks] == ["NAME", "SYNOPSIS", "DESCRIPTION", "ERRORS"]
    errors = chunks[-1]
    assert "EXDEV" in errors.text and "ERRORS" not in errors.text  # the heading goes in the passage, not the text
    assert errors.passage().startswith("rename(2) — ERRORS\nEXDEV oldpath")
    assert [chunk.chunk_id for chunk in chunks] == [f"rename.2#{i}" for i in range(4)]


def test_markdown_headings_are_sections(tokenizer):
    document = Document(doc_id="guide.md", text="Intro line.\n\n# Install\n\nRun pip.\n\n## Usage\n\nCall it.\n")
    chunks = chunk_document(document, tokenizer, ChunkingSettings())
    assert [(chunk.section, chunk.text) for chunk in chunks] == [("", "Intro line."), ("Install", "Run pip."),
                                                                 ("Usage", "Call it.")]


def test_chunks_fit_the_token_budget_and_prefer_paragraph_cuts(tokenizer):
    document = _long_document()
    chunks = chunk_document(document, tokenizer, ChunkingSettings(max_tokens=120, overlap_tokens=0))
    assert len(chunks) > 3
    assert all(_n_tokens(tokenizer, chunk.text) <= 120 for chunk in chunks)
    # Each paragraph is ~60 tokens, so every cut can fall on a paragraph break.
    assert all(chunk.text.startswith("Paragraph") for chunk in chunks)


def test_consecutive_chunks_overlap(tokenizer):
    document = Document(doc_id="one-paragraph", text=" ".join(f"Sentence number {i} is here." for i in range(60)))
    chunks = chunk_document(document, tokenizer, ChunkingSettings(max_tokens=50, overlap_tokens=16))
    assert len(chunks) > 3
    for previous, following in zip(chunks, chunks[1:]):
        shared = previous.end - following.start
        assert shared > 0, "no overlap"
        assert _n_tokens(tokenizer, document.text[following.start:previous.end]) <= 16
        assert following.text.startswith("Sentence"), "the overlap starts at a sentence"


def test_without_overlap_chunks_tile_the_section(tokenizer):
    document = Document(doc_id="tiles", text=" ".join(f"w{i}" for i in range(500)))
    chunks = chunk_document(document, tokenizer, ChunkingSettings(max_tokens=64, overlap_tokens=0))
    words = " ".join(chunk.text for chunk in chunks).split()
    assert words == document.text.split()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(alphabet="abcdefgh XYZ.,\n-é", min_size=1, max_size=120), min_size=1, max_size=12),
       st.integers(min_value=8, max_value=48), st.integers(min_value=0, max_value=4))
def test_windows_cover_every_token_within_budget(paragraphs, max_tokens, overlap):
    tokenizer = _hypothesis_tokenizer()
    text = "\n\n".join(paragraphs)
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    spans = [span for span in offsets if span[1] > span[0]]
    chunking = ChunkingSettings(max_tokens=max_tokens, overlap_tokens=overlap)
    windows = list(token_windows(text, spans, chunking))
    covered = set()
    for first, last in windows:
        assert 0 < last - first <= max_tokens
        covered.update(range(first, last))
    assert covered == set(range(len(spans)))
    assert all(b[0] > a[0] for a, b in zip(windows, windows[1:])), "windows advance"


_TOKENIZER = []


def _hypothesis_tokenizer():
    # hypothesis forbids function-scoped fixtures; load once per process instead.
    if not _TOKENIZER:
        _TOKENIZER.append(minilm_tokenizer())
    return _TOKENIZER[0]


def test_folder_corpus_reads_txt_and_md(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_text("alpha text")
    (tmp_path / "sub" / "b.md").write_text("# B\n\nbeta text")
    (tmp_path / "ignored.bin").write_bytes(b"\x00\x01")
    (tmp_path / "blank.txt").write_text("   \n")
    documents = load_corpus(tmp_path)
    assert [(d.doc_id, d.title) for d in documents] == [("a.txt", "a"), ("sub/b.md", "b")]


def test_jsonl_corpus_keeps_title_and_section(tmp_path):
    path = tmp_path / "corpus.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write(json.dumps({"id": "rename.2", "title": "rename(2)", "section": "2", "text": "NAME\n  x"}) + "\n")
    assert load_corpus(path) == [Document(doc_id="rename.2", title="rename(2)", section="2", text="NAME\n  x")]


def test_corpus_fingerprint_changes_with_any_text():
    documents = sample_documents()
    changed = [*documents[:-1], Document(**{**documents[-1].__dict__, "text": documents[-1].text + "x"})]
    assert corpus_fingerprint(documents) == corpus_fingerprint(list(documents))
    assert corpus_fingerprint(documents) != corpus_fingerprint(changed)


def test_empty_corpus_is_an_error_naming_it(tmp_path):
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(DomainbenchError, match=f"{tmp_path}: the corpus is empty"):
        load_corpus(tmp_path)
    empty_jsonl = tmp_path / "c.jsonl"
    empty_jsonl.write_text("\n")
    with pytest.raises(DomainbenchError, match="c.jsonl: the corpus is empty"):
        load_corpus(empty_jsonl)


def test_non_utf8_file_is_an_error_naming_the_file(tmp_path):
    (tmp_path / "good.txt").write_text("fine")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(DomainbenchError, match=r"latin1\.txt: not valid UTF-8 \(byte 3"):
        load_corpus(tmp_path)


def test_non_utf8_jsonl_line_is_an_error_naming_file_and_line(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_bytes(b'{"id": "a", "text": "ok"}\n{"id": "b", "text": "caf\xe9"}\n')
    with pytest.raises(DomainbenchError, match=r"corpus\.jsonl:2: not valid UTF-8"):
        load_corpus(path)


def test_jsonl_record_without_text_names_line_and_field(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text('{"id": "a", "text": "ok"}\n{"id": "b"}\n')
    with pytest.raises(DomainbenchError, match=r"corpus\.jsonl:2: text: expected a string"):
        load_corpus(path)


def test_bad_chunking_settings_are_errors():
    with pytest.raises(DomainbenchError, match="overlap"):
        ChunkingSettings(max_tokens=100, overlap_tokens=80)
    with pytest.raises(DomainbenchError, match="chunk size"):
        ChunkingSettings(max_tokens=2)
