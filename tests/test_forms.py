"""Deployable forms as configurations: parsing, building, evaluating beside their parents, gating."""

from __future__ import annotations

import json
import math

import pytest

from harness.errors import DomainbenchError
from run.spec import load_spec, parse_configuration
from tests.test_runner import tiny_recipes, write_run_suite


def test_forms_compose_and_name_their_parent():
    merged = parse_configuration("adapter+merged+int8+rag")
    assert (merged.forms, merged.adapter, merged.rag) == (("merged", "int8"), "lora", True)
    assert merged.model_key == "adapter+merged+int8"
    assert merged.parent == "adapter+merged+rag"
    assert parse_configuration("adapter+merged").parent == "adapter"
    assert parse_configuration("pruned").parent == "base"
    assert parse_configuration("pruned").model_key == "base+pruned"
    assert parse_configuration("base+gguf").model_key == "base+gguf"
    assert parse_configuration("finetuned+int8").parent == "finetuned"
    assert parse_configuration("adapter").parent is None


@pytest.mark.parametrize("name, message", [
    ("merged", "merged needs an adapter"),
    ("prefix+merged", "only LoRA adapters merge"),
    ("adapter+int8", "merge the adapter first"),
    ("int8+pruned", "forms apply in the order"),
    ("int8+nf4", "two quantizations"),
    ("pruned+int8+gguf", "does not stack on int8"),
    ("int8+int8", "names int8 twice"),
])
def test_forms_that_cannot_apply_are_refused(name, message):
    with pytest.raises(DomainbenchError, match=message):
        parse_configuration(name)


def test_bad_form_settings_name_the_field(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("forms: {gguf_type: q3}\n")
    with pytest.raises(DomainbenchError, match="forms.gguf_type: 'q3'"):
        load_spec(spec, {})
    spec.write_text("forms: {int4: yes}\n")
    with pytest.raises(DomainbenchError, match="forms.int4: unknown run spec field"):
        load_spec(spec, {})


def test_nf4_on_a_cpu_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    from cli.main import main

    monkeypatch.setenv("DOMAINBENCH_CACHE", str(tmp_path / "cache"))
    suite = write_run_suite(tmp_path / "suite")
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--suite", str(suite), "--model", "tiny-random-llama", "--device", "cpu",
              "--configurations", "base,finetuned+nf4", "--output", str(tmp_path / "runs")])
    assert exit_info.value.code == 2
    assert "finetuned+nf4: nf4 needs a CUDA GPU" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "cache" / "artifacts").exists()


@pytest.mark.slow
def test_merged_adapter_scores_like_the_adapter_and_the_report_pairs_them(tmp_path, monkeypatch):
    from reports.compare import compare_forms
    from run import runner

    monkeypatch.setenv("DOMAINBENCH_CACHE", str(tmp_path / "cache"))
    suite = write_run_suite(tmp_path / "suite")
    overrides = {"name": "forms", "suite": str(suite), "model": "tiny-random-llama", "output": str(tmp_path / "runs"),
                 "profile": "quick", "device": "cpu", "dtype": "float32", "recipes": tiny_recipes(tmp_path),
                 "configurations": ["base", "adapter", "adapter+merged", "base+int8"]}
    run_dir = runner.run(load_spec(None, overrides))

    def examples(configuration):
        result = json.loads((run_dir / "results" / configuration / "perplexity.json").read_text())
        return result, {e["id"]: e["scores"]["logprob"] for e in result["examples"]}

    adapter, adapter_ll = examples("adapter")
    merged, merged_ll = examples("adapter+merged")
    assert adapter_ll.keys() == merged_ll.keys() and adapter_ll
    for example_id, loglikelihood in adapter_ll.items():
        assert math.isclose(merged_ll[example_id], loglikelihood, abs_tol=1e-4, rel_tol=0)
    assert merged["model"]["parent"] == "adapter" and merged["model"]["forms"] == ["merged"]
    assert merged["cost"]["training"]["adapter+merged"]["purpose"] == "form"
    assert (run_dir / "artifacts" / "adapter+merged" / "model.safetensors").is_file()

    base, _ = examples("base")
    quantized, _ = examples("base+int8")
    assert quantized["cost"]["serving"]["model_bytes"] < 0.6 * base["cost"]["serving"]["model_bytes"]

    report = (run_dir / "report.md").read_text()
    assert "### adapter+merged vs adapter" in report and "### base+int8 vs base" in report
    assert "## Serving cost per configuration" in report and "| base+int8 | HFEngine |" in report
    assert "indistinguishable" in report
    gate = compare_forms(run_dir)
    assert not gate.regressions and {c.configuration for c in gate.changes} == {
        "adapter+merged vs adapter", "base+int8 vs base"}


def test_a_form_is_always_evaluated_beside_its_parent():
    spec = load_spec(None, {"configurations": ["base", "finetuned+int8", "adapter+merged+int8+rag"]})
    assert spec.configuration_names("quick") == [
        "base", "finetuned", "finetuned+int8", "adapter+rag", "adapter+merged+rag", "adapter+merged+int8+rag"]


def test_a_pruned_form_is_cached_per_suite_it_was_calibrated_on(tmp_path, monkeypatch):
    from dataclasses import replace
    from types import SimpleNamespace

    import tuning.forms as forms
    import tuning.forms.base

    monkeypatch.setenv("DOMAINBENCH_CACHE", str(tmp_path / "cache"))
    calibrated_on = []
    monkeypatch.setitem(tuning.forms.base._FORMS, "pruned", replace(
        forms.get_form("pruned"), make=lambda build, directory: calibrated_on.append(build.suite.name) or {}))
    source = forms.FormSource(path=tmp_path, fingerprint="f" * 64)

    def pruned_for(suite_name: str):
        suite = SimpleNamespace(name=suite_name, fingerprint=suite_name * 64)
        return forms.build_form("pruned", source, settings={"int8": "weights", "gguf_type": "q8_0"},
                                recipe={"ratio": 0.25}, suite=suite)[0]

    on_a = pruned_for("a")
    assert pruned_for("a") == on_a and calibrated_on == ["a"]  # same suite: reused
    assert pruned_for("b") != on_a and calibrated_on == ["a", "b"]  # another suite: pruned on its own texts
