"""`domainbench run` checks the whole run before its first step: one line per problem, exit 2, nothing made."""

from __future__ import annotations

import json

import pytest
import yaml
from test_runner import tiny_recipes, write_run_suite

from cli.main import main
from run.preflight import check_run
from run.spec import load_spec
from tasks.suite import load_suite

TUNED_AND_RAG = ["base", "rag", "adapter", "finetuned", "distilled"]


@pytest.fixture
def nothing_may_be_built(tmp_path, monkeypatch):
    """No training and no index: a bad run must stop before either."""
    import retrieval.index
    import tuning.strategies

    def built(*args, **kwargs):
        raise AssertionError("training or indexing started before the run was checked")

    monkeypatch.setattr(tuning.strategies, "tune", built)
    monkeypatch.setattr(retrieval.index, "build_index", built)
    monkeypatch.setenv("DOMAINBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # an unknown encoder name must not wait on the network


@pytest.fixture
def run_suite(tmp_path):
    return write_run_suite(tmp_path / "suite")


def refused(tmp_path, capsys, spec: dict, *flags: str) -> list[str]:
    """Run `spec` through the CLI; assert it exits 2 without a run dir; return the error's lines."""
    spec = {"name": "r", "model": "tiny-random-llama", "output": str(tmp_path / "runs"), "profile": "quick",
            "configurations": TUNED_AND_RAG, **spec}
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    with pytest.raises(SystemExit) as exited:
        main(["run", str(spec_file), *flags])
    assert exited.value.code == 2
    assert not (tmp_path / "runs").exists()
    err = capsys.readouterr().err
    return err[err.index("error: "):].splitlines()


@pytest.mark.usefixtures("nothing_may_be_built")
@pytest.mark.parametrize("field, value, expected", [
    ("dtype", "bf61", "--dtype 'bf61': expected one of auto, float32"),
    ("device", "tpu", "--device 'tpu': not a device of this machine (available: cpu"),
    ("rag", {"kind": "hnws"}, "rag.kind: 'hnws' is not an index kind (expected one of flat, hnsw, ivf)"),
    ("rag", {"encoder": "nope"}, "rag.encoder: encoder nope: not a builtin or a local path"),
])
def test_a_bad_spec_field_is_named_before_anything_trains(tmp_path, capsys, run_suite, field, value, expected):
    lines = refused(tmp_path, capsys, {"suite": str(run_suite), "recipes": tiny_recipes(tmp_path), field: value})
    assert len(lines) == 1 and expected in lines[0], lines


@pytest.mark.usefixtures("nothing_may_be_built")
def test_the_device_flag_is_checked_like_the_field(tmp_path, capsys, run_suite):
    lines = refused(tmp_path, capsys, {"suite": str(run_suite)}, "--device", "cuda:7")
    assert len(lines) == 1 and "--device 'cuda:7': not a device of this machine" in lines[0]


@pytest.mark.usefixtures("nothing_may_be_built")
def test_a_missing_recipe_file_is_named(tmp_path, capsys, run_suite):
    recipes = {**tiny_recipes(tmp_path), "distill": str(tmp_path / "no-such-distill.yaml")}
    lines = refused(tmp_path, capsys, {"suite": str(run_suite), "recipes": recipes})
    assert len(lines) == 1 and "no-such-distill.yaml: cannot read" in lines[0], lines


@pytest.mark.usefixtures("nothing_may_be_built")
def test_a_recipe_is_validated_by_the_tuning_loader_even_when_no_configuration_uses_it(tmp_path, capsys, run_suite):
    prefix = tmp_path / "prefix.yaml"
    prefix.write_text("train: {schedule: sometimes}\n")
    lines = refused(tmp_path, capsys, {"suite": str(run_suite), "recipes": {"prefix": str(prefix)}})
    assert len(lines) == 1 and f"{prefix}: train.schedule: 'sometimes'" in lines[0], lines


@pytest.mark.usefixtures("nothing_may_be_built")
def test_a_suite_without_a_corpus_is_refused_for_tuning_and_retrieval(tmp_path, capsys):
    lines = refused(tmp_path, capsys, {"suite": "tiny", "configurations": ["base", "finetuned", "rag"]})
    assert any("finetuned: tuning full trains on the corpus (data.mixture.cpt in the default full recipe), "
               "but" in line and "tiny/suite.yaml names no corpus" in line for line in lines), lines
    assert any(line.startswith("rag: retrieval needs a knowledge base") for line in lines), lines


@pytest.mark.usefixtures("nothing_may_be_built")
def test_task_examples_without_a_dev_split_are_refused(tmp_path, capsys):
    sft_only = tmp_path / "lora.yaml"
    sft_only.write_text("data: {mixture: {sft: 1.0}}\n")
    lines = refused(tmp_path, capsys, {"suite": "tiny", "configurations": ["adapter"],
                                       "recipes": {"lora": str(sft_only)}})
    assert lines == [f"error: adapter: tuning lora trains on task examples (data.mixture.sft in {sft_only}), "
                     f"but no task of {load_suite('tiny').path / 'suite.yaml'} has a dev split"]


@pytest.mark.usefixtures("nothing_may_be_built")
def test_the_distilled_teacher_needs_what_the_full_strategy_reads(tmp_path, capsys, run_suite):
    corpus_without_dev = [json.dumps({"id": "p", "title": "p", "section": "2", "split": "train", "text": "x"})]
    (run_suite / "corpus.jsonl").write_text("\n".join(corpus_without_dev) + "\n")
    (run_suite / "suite.yaml").write_text((run_suite / "suite.yaml").read_text().replace(
        "corpus.jsonl.gz", "corpus.jsonl"))
    lines = refused(tmp_path, capsys, {"suite": str(run_suite), "configurations": ["distilled"]})
    assert any(line.startswith("distilled: tuning full trains on the corpus") and "no 'dev' records" in line
               for line in lines), lines


@pytest.mark.usefixtures("nothing_may_be_built")
def test_every_problem_is_listed_at_once(tmp_path, capsys, run_suite):
    lines = refused(tmp_path, capsys, {"suite": str(run_suite), "dtype": "bf61", "device": "tpu",
                                       "rag": {"kind": "hnws"}, "recipes": tiny_recipes(tmp_path)})
    assert len(lines) == 3
    assert "--device 'tpu'" in lines[0] and "--dtype 'bf61'" in lines[1] and lines[2].startswith("rag.kind")


@pytest.mark.usefixtures("nothing_may_be_built")
def test_a_spec_value_of_the_wrong_type_is_named(tmp_path, capsys, run_suite):
    lines = refused(tmp_path, capsys, {"suite": str(run_suite), "limit": "many"})
    assert len(lines) == 1 and "spec.yaml: limit: expected int | None, got 'many'" in lines[0], lines
    lines = refused(tmp_path, capsys, {"suite": str(run_suite), "rag": "hnsw"})
    assert len(lines) == 1 and "spec.yaml: rag: expected a mapping" in lines[0], lines


def test_a_good_run_passes_preflight(tmp_path, run_suite, monkeypatch):
    monkeypatch.setenv("DOMAINBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)  # the default run dir (runs/demo) is relative: not the checkout's own runs/
    spec = load_spec(None, {"suite": str(run_suite), "model": "tiny-random-llama", "device": "cpu",
                            "dtype": "float32", "recipes": tiny_recipes(tmp_path), "profile": "quick",
                            "configurations": [*TUNED_AND_RAG, "adapter+rag"]})
    check_run(spec, load_suite(run_suite), spec.parsed_configurations("quick"), "quick")


@pytest.mark.usefixtures("nothing_may_be_built")
def test_a_rag_run_over_examples_that_name_no_source_is_refused(tmp_path, capsys, run_suite):
    (run_suite / "cls-test.jsonl").write_text(json.dumps({"id": "c1", "text": "open a file", "label": "2"}) + "\n")
    with (run_suite / "suite.yaml").open("a") as handle:
        handle.write("  - name: section\n    type: classification\n    data: {test: cls-test.jsonl}\n"
                     "    labels: {\"2\": \" system call\"}\n")
    lines = refused(tmp_path, capsys, {"suite": str(run_suite), "configurations": ["base", "rag"]})
    assert lines == ["error: task section: rag: exclude-source needs source.doc_id on every example, and 1 have "
                     "none (first: 'c1'); add `source: {doc_id: …}` to the examples, or set `rag: on` (retrieval "
                     "may return the example's own document) or `rag: off` in suite.yaml"]
