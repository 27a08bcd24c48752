"""The builtin MiniLM encoder end to end on a handful of short pages: encode, CLI build and search."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from retrieval_fakes import sample_documents

from cli.main import cli, main
from retrieval.embedding import load_encoder
from retrieval.retriever import Retriever

EXDEV_QUERY = "Which error does rename() return when oldpath and newpath are not on the same mounted filesystem?"


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    for document in sample_documents():
        (root / f"{document.doc_id}.txt").write_text(document.text)
    return root


@pytest.fixture(scope="module")
def index_dir(corpus_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("indexes") / "minilm"
    result = CliRunner().invoke(cli, ["index", "build", "--corpus", str(corpus_dir), "--out", str(out),
                                      "--device", "cpu"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "built:" in result.output and "4 documents -> 16 chunks" in result.output
    return out


def test_minilm_embeddings_are_unit_length_and_batch_independent():
    encoder = load_encoder("minilm-l6", device="cpu", dtype="float32")
    texts = ["rename a file", "map memory", "EXDEV cross-device link"]
    together = encoder.encode(texts, batch_size=3)
    one_by_one = np.concatenate([encoder.encode([t], batch_size=1) for t in texts])
    assert together.shape == (3, 384) and together.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)


def test_bf16_embeddings_point_where_fp32_ones_do():
    texts = ["rename a file", "map memory", "EXDEV cross-device link"]
    fp32 = load_encoder("minilm-l6", device="cpu", dtype="float32").encode(texts)
    bf16 = load_encoder("minilm-l6", device="cpu", dtype="bfloat16")
    assert bf16.dtype == "bfloat16"
    vectors = bf16.encode(texts)
    assert vectors.dtype == np.float32
    assert np.all(np.sum(fp32 * vectors, axis=1) > 0.99)


def test_an_index_records_its_encoder_dtype_and_queries_use_it(index_dir):
    retriever = Retriever.load(index_dir)
    assert retriever.encoder.dtype == retriever.index.manifest["encoder"]["dtype"]


def test_cli_search_ranks_the_rename_errors_first(index_dir):
    result = CliRunner().invoke(cli, ["index", "search", str(index_dir), EXDEV_QUERY, "-k", "2"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if ".txt#" in line]
    assert len(rows) == 2 and "rename.2.txt#3" in rows[0] and "ERRORS" in rows[0]


def test_retriever_loads_its_encoder_from_the_manifest(index_dir):
    hits = Retriever.load(index_dir, device="cpu").search(EXDEV_QUERY, k=3)
    assert (hits[0].doc_id, hits[0].section) == ("rename.2.txt", "ERRORS")


def test_rebuilding_with_unchanged_inputs_is_a_reuse(corpus_dir, index_dir):
    result = CliRunner().invoke(cli, ["index", "build", "--corpus", str(corpus_dir), "--out", str(index_dir)],
                                catch_exceptions=False)
    assert result.output.startswith("reused (inputs unchanged)")


def test_cli_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        main(["index", "build", "--corpus", str(tmp_path / "empty"), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'empty'}: the corpus is empty (no document with text)\n"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flags, mode", [([], "hybrid"), (["--retrieval", "dense"], "dense")])
def test_eval_retrieves_as_a_run_does_hybrid_unless_told(index_dir, tmp_path, flags, mode):
    from reports.schema import load_result, result_path

    main(["eval", "--model", "tiny-random-llama", "--suite", "tiny", "--tasks", "errno-qa", "--limit", "2",
          "--device", "cpu", "--rag-index", str(index_dir), "--output", str(tmp_path), *flags])
    result = load_result(result_path(tmp_path, "base+rag", "errno-qa"))
    assert result.settings["rag"]["retrieval"] == mode
    assert result.settings["rag"]["index_fingerprint"] == Retriever.load(index_dir).index.manifest["input_hash"]
    assert all(example["retrieved"] for example in result.examples)


def test_eval_offers_the_retrieval_modes_a_run_has():
    from cli.eval import RETRIEVAL_MODES
    from retrieval.bm25 import DEFAULT_MODE
    from retrieval.bm25 import RETRIEVAL_MODES as RUN_MODES

    assert RETRIEVAL_MODES == RUN_MODES and RETRIEVAL_MODES[0] == DEFAULT_MODE


def test_eval_refuses_a_retrieval_mode_without_an_index(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["eval", "--model", "tiny-random-llama", "--suite", "tiny", "--retrieval", "dense",
              "--output", str(tmp_path / "run")])
    assert exited.value.code == 2
    assert "--retrieval applies with --rag-index only" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
