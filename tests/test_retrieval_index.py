"""FAISS index building, manifest reuse, loading checks and search, with a bag-of-words encoder."""

from __future__ import annotations

import json

import numpy as np
import pytest
from retrieval_fakes import fake_encoder, minilm_tokenizer, sample_documents

from harness.errors import DomainbenchError
from harness.manifest import MANIFEST_FILE
from retrieval.chunking import ChunkingSettings
from retrieval.corpus import Document
from retrieval.index import (
    CHUNKS_FILE,
    INDEX_FILE,
    approximate_recall,
    build_faiss_index,
    build_index,
    load_index,
)
from retrieval.retriever import Retriever


@pytest.fixture(scope="module")
def encoder():
    return fake_encoder(minilm_tokenizer())


@pytest.fixture
def built(tmp_path, encoder):
    out = tmp_path / "index"
    build_index(sample_documents(), out, encoder=encoder)
    return out


def test_exact_search_finds_the_planted_document(built, encoder):
    retriever = Retriever.load(built, encoder=encoder)
    hits = retriever.search("EXDEV oldpath and newpath are not on the same mounted filesystem", k=3)
    assert hits[0].doc_id == "rename.2" and hits[0].section == "ERRORS"
    assert "EXDEV" in hits[0].text
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert hits[0].score == pytest.approx(max(h.score for h in hits)) and hits[0].score <= 1.0 + 1e-6


def test_search_many_equals_search_one_by_one(built, encoder):
    retriever = Retriever.load(built, encoder=encoder)
    queries = ["map files into memory", "change working directory", "delete a name"]
    assert retriever.search_many(queries, k=4) == [retriever.search(q, k=4) for q in queries]


def test_k_beyond_the_collection_returns_every_chunk(built, encoder):
    retriever = Retriever.load(built, encoder=encoder)
    assert len(retriever.search("file", k=1000)) == len(retriever.index.chunks)


def test_manifest_records_inputs_counts_and_files(built):
    manifest = json.loads((built / MANIFEST_FILE).read_text())
    assert manifest["encoder"]["spec"] == "fake-bow" and manifest["encoder"]["dimension"] == 256
    assert manifest["chunking"] == {"max_tokens": 200, "overlap_tokens": 32}
    assert manifest["counts"]["documents"] == 4 and manifest["counts"]["chunks"] == 16
    assert manifest["index"]["kind"] == "flat" and manifest["recall_vs_exact"] is None
    assert manifest["index"]["file_bytes"] == (built / INDEX_FILE).stat().st_size
    chunk_lines = (built / CHUNKS_FILE).read_text().splitlines()
    assert len(chunk_lines) == 16 and json.loads(chunk_lines[0])["chunk_id"] == "rename.2#0"


def test_unchanged_inputs_reuse_the_index(built, encoder):
    stamp = (built / INDEX_FILE).stat().st_mtime_ns
    result = build_index(sample_documents(), built, encoder=encoder)
    assert result.reused and (built / INDEX_FILE).stat().st_mtime_ns == stamp


@pytest.mark.parametrize("change", ["corpus", "chunking", "encoder", "kind", "faiss upgrade"])
def test_a_changed_input_rebuilds_the_index(built, encoder, change, monkeypatch):
    import harness.manifest

    documents, kwargs = sample_documents(), {"encoder": encoder}
    installed = harness.manifest.installed_version
    if change == "corpus":
        documents.append(Document(doc_id="new.2", text="NAME\n       new - a new page"))
    elif change == "chunking":
        kwargs["chunking"] = ChunkingSettings(max_tokens=64, overlap_tokens=8)
    elif change == "encoder":
        kwargs["encoder"] = fake_encoder(encoder.tokenizer, salt=1)
    elif change == "kind":
        kwargs["kind"] = "hnsw"
    else:
        monkeypatch.setattr(harness.manifest, "installed_version",
                            lambda name: "99.0" if name == "faiss-cpu" else installed(name))
    before = json.loads((built / MANIFEST_FILE).read_text())["input_hash"]
    result = build_index(documents, built, **kwargs)
    assert not result.reused and result.manifest["input_hash"] != before
    assert json.loads((built / MANIFEST_FILE).read_text()) == result.manifest


def test_a_failed_build_leaves_the_old_index_and_no_debris(built, encoder, monkeypatch):
    import faiss

    before = {name: (built / name).read_bytes() for name in (INDEX_FILE, CHUNKS_FILE, MANIFEST_FILE)}

    def disk_full(index, path):
        open(path, "wb").write(b"partial")
        raise OSError("No space left on device")

    monkeypatch.setattr(faiss, "write_index", disk_full)
    with pytest.raises(OSError, match="No space"):
        build_index(sample_documents(), built, encoder=encoder, force=True)
    assert {name: (built / name).read_bytes() for name in before} == before
    assert sorted(p.name for p in built.parent.iterdir()) == ["index"]


def test_hnsw_recall_against_exact_is_reported_and_high(tmp_path, encoder):
    result = build_index(sample_documents(), tmp_path / "hnsw", encoder=encoder, kind="hnsw",
                         chunking=ChunkingSettings(max_tokens=24, overlap_tokens=4))
    recall = result.manifest["recall_vs_exact"]
    assert recall["k"] == 10 and recall["queries"] == result.manifest["counts"]["chunks"]
    assert recall["recall"] >= 0.95
    assert result.manifest["index"]["params"] == {"m": 32, "ef_construction": 200, "ef_search": 128}
    assert load_index(tmp_path / "hnsw").faiss_index.hnsw.efSearch == 128


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_kinds_agree_with_exact_on_clustered_vectors(kind):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(40, 64))
    vectors = (centres[rng.integers(0, 40, 5000)] + 0.3 * rng.normal(size=(5000, 64))).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index, params = build_faiss_index(vectors, kind)
    assert approximate_recall(vectors, index, n_queries=300)["recall"] >= 0.9
    if kind == "ivf":
        assert params["nlist"] == min(int(4 * 5000 ** 0.5), 5000 // 39)


def test_exact_index_recall_against_itself_is_one():
    vectors = np.random.default_rng(1).normal(size=(500, 16)).astype(np.float32)
    index, _ = build_faiss_index(vectors, "flat")
    assert approximate_recall(vectors, index)["recall"] == 1.0


def test_loading_with_another_encoder_is_an_error(built, encoder):
    with pytest.raises(DomainbenchError, match=r"manifest\.json: encoder: the index was built with fake-bow"):
        Retriever.load(built, encoder="minilm-l6")
    retrained = fake_encoder(encoder.tokenizer, salt=7)  # same name, other weights
    with pytest.raises(DomainbenchError, match="other weights"):
        Retriever.load(built, encoder=retrained)


def test_corrupted_index_file_is_an_error_naming_it(built):
    data = bytearray((built / INDEX_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (built / INDEX_FILE).write_bytes(bytes(data))
    with pytest.raises(DomainbenchError, match=rf"{INDEX_FILE}: corrupted"):
        load_index(built)


def test_truncated_index_file_is_an_error_naming_it(built):
    (built / INDEX_FILE).write_bytes((built / INDEX_FILE).read_bytes()[:100])
    with pytest.raises(DomainbenchError, match=rf"{INDEX_FILE}: corrupted"):
        load_index(built)


def test_unreadable_manifest_is_an_error_naming_it(built):
    (built / MANIFEST_FILE).write_text("{ not json")
    with pytest.raises(DomainbenchError, match=rf"{MANIFEST_FILE}: not valid JSON"):
        load_index(built)


def test_chunks_out_of_step_with_the_index_is_an_error(built):
    lines = (built / CHUNKS_FILE).read_text().splitlines()
    (built / CHUNKS_FILE).write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(DomainbenchError, match=rf"{CHUNKS_FILE}: corrupted .*; rebuild the index"):
        load_index(built)


def test_a_chunk_text_altered_in_place_is_refused_not_retrieved(built):
    chunks = (built / CHUNKS_FILE).read_text()
    (built / CHUNKS_FILE).write_text(chunks.replace("e", "3", 1))  # same size, one character changed
    with pytest.raises(DomainbenchError, match=rf"{CHUNKS_FILE}: corrupted \(its checksum differs"):
        load_index(built)


def test_missing_index_directory_is_an_error(tmp_path):
    with pytest.raises(DomainbenchError, match="no such index directory"):
        load_index(tmp_path / "nowhere")


def test_unknown_kind_or_parameter_is_an_error(tmp_path, encoder):
    with pytest.raises(DomainbenchError, match="expected one of flat, hnsw, ivf"):
        build_index(sample_documents(), tmp_path / "x", encoder=encoder, kind="lsh")
    with pytest.raises(DomainbenchError, match="unknown parameter nprobe"):
        build_index(sample_documents(), tmp_path / "x", encoder=encoder, kind="hnsw", params={"nprobe": 4})
