"""Variants as configurations: `adapter@rc` trains the adapter on augmented data and is compared with `adapter`."""

from __future__ import annotations

import json

import pytest

from harness.errors import DomainbenchError
from run.spec import load_spec, parse_configuration
from tests.test_runner import tiny_recipes, write_run_suite


def test_a_variant_attaches_to_the_trained_part_and_names_its_artifacts():
    merged = parse_configuration("adapter@rc+merged+rag")
    assert (merged.variant, merged.adapter_key, merged.weights_key) == ("rc", "lora@rc", "base")
    assert merged.model_key == "adapter@rc+merged"
    assert merged.parent == "adapter@rc+rag"
    assert merged.plain == "adapter+merged+rag"
    tuned = parse_configuration("finetuned@synthetic-qa+rag")
    assert (tuned.weights, tuned.weights_key, tuned.model_key, tuned.plain) == (
        "finetuned", "finetuned@synthetic-qa", "finetuned@synthetic-qa", "finetuned+rag")
    assert parse_configuration("adapter").plain is None


@pytest.mark.parametrize("name, message", [
    ("base@rc", "a variant goes on a trained part"),
    ("rag@rc", "a variant goes on a trained part"),
    ("adapter+merged@rc", "a variant goes on a trained part"),
    ("adapter@RC", "expected lower-case letters"),
    ("adapter@", "expected lower-case letters"),
    ("adapter@rc+adapter@x", "names two variants"),
])
def test_bad_variant_names_are_refused(name, message):
    with pytest.raises(DomainbenchError, match=message):
        parse_configuration(name)


@pytest.mark.parametrize("text, message", [
    ("configurations: [adapter@nope]\n", r"spec.yaml: configurations: adapter@nope: unknown variant 'nope' \(known: "),
    ("configurations: [adapter@mine]\nvariants: {mine: {augment: {method: paraphrase}}}\n",
     r"spec.yaml: variants.mine.*augment.method: 'paraphrase'"),
    ("configurations: [adapter@mine]\nvariants: {mine: {augment: {rate: 0.1}}}\n",
     r"spec.yaml: variants.mine: augment.rate: unknown field"),
    ("configurations: [finetuned@mine]\nvariants: {mine: {augment: {seed: 3}}}\n",
     r"spec.yaml: variants.mine: augment.method: a variant trains on augmented data"),
    ("variants: {mine: {recipe: x.yaml}}\n", r"spec.yaml: variants.mine.recipe: unknown variant field"),
    ("variants: {mine: {generator: 3}}\n", r"spec.yaml: variants.mine.generator: expected a model spec"),
    ("variants: {Mine: {}}\n", r"spec.yaml: variants.Mine: expected lower-case"),
])
def test_the_spec_names_the_file_and_field_of_a_bad_variant(tmp_path, text, message):
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    with pytest.raises(DomainbenchError, match=message):
        load_spec(spec, {})


def test_preflight_refuses_a_generator_that_cannot_be_opened_before_any_work(tmp_path):
    from run import runner

    spec = tmp_path / "spec.yaml"
    spec.write_text("variants: {qa: {augment: {method: synthetic-qa}, generator: no-such-model-dir}}\n")
    overrides = {"name": "r", "suite": str(write_run_suite(tmp_path / "suite")), "model": "tiny-random-llama",
                 "output": str(tmp_path / "runs"), "profile": "quick", "device": "cpu",
                 "configurations": ["adapter@qa"]}
    with pytest.raises(DomainbenchError, match="adapter@qa: the synthetic-qa generator 'no-such-model-dir' cannot "
                                               "be opened"):
        runner.run(load_spec(spec, overrides))
    assert not (tmp_path / "runs" / "r").exists()


def run_overrides(tmp_path, configurations: list[str]) -> dict:
    return {"name": "v1", "suite": str(write_run_suite(tmp_path / "suite")), "model": "tiny-random-llama",
            "output": str(tmp_path / "runs"), "profile": "quick", "device": "cpu", "limit": 2,
            "recipes": tiny_recipes(tmp_path), "configurations": configurations}


@pytest.mark.slow
def test_a_variant_runs_beside_its_plain_strategy_with_its_costs_card_and_paired_test(tmp_path, monkeypatch, capsys):
    import run.runner as runner
    from cli.main import main
    from reports.compare import compare_variants
    from serve.served import served_from_run

    monkeypatch.setenv("DOMAINBENCH_CACHE", str(tmp_path / "cache"))
    overrides = run_overrides(tmp_path, ["adapter", "adapter@rc", "adapter@rc+merged"])
    run_dir = runner.run(load_spec(None, overrides))

    plain = json.loads((run_dir / "results" / "adapter" / "errno-qa.json").read_text())
    variant = json.loads((run_dir / "results" / "adapter@rc" / "errno-qa.json").read_text())
    assert (variant["model"]["variant"], variant["model"]["variant_of"]) == ("rc", "adapter")
    assert variant["model"]["adapter_fingerprint"] != plain["model"]["adapter_fingerprint"]
    costs = variant["cost"]["training"]
    assert {name: block["purpose"] for name, block in costs.items()} == {"lora@rc": "adapter",
                                                                        "lora@rc data": "augmentation"}
    mining = costs["lora@rc data"]
    assert mining["method"] == "reading-comprehension" and mining["wall_seconds"] > 0
    assert mining["added_train_tokens"] > 0
    assert mining["data_card"] == "artifacts/lora@rc/augmented-data.md"
    assert (run_dir / mining["data_card"]).read_text().startswith("# Augmented training data: reading-comprehension")
    assert set(plain["cost"]["training"]) == {"lora"}

    manifest = json.loads((run_dir / "artifacts" / "lora@rc" / "domainbench_manifest.json").read_text())
    assert manifest["inputs"]["augment"]["method"] == "reading-comprehension"
    assert "augmentation" in manifest["cost"] and "wall_seconds" not in json.dumps(manifest["inputs"])
    report = (run_dir / "report.md").read_text()
    assert "[lora@rc data card](artifacts/lora@rc/augmented-data.md)" in report
    assert "lora@rc data (augmentation: reading-comprehension, +" in report
    html = (run_dir / "report.html").read_text()
    assert '<a href="artifacts/lora@rc/augmented-data.md">lora@rc data card</a>' in html

    merged = json.loads((run_dir / "results" / "adapter@rc+merged" / "errno-qa.json").read_text())
    assert (merged["model"]["parent"], merged["model"]["variant_of"]) == ("adapter@rc", "adapter+merged")
    assert "lora@rc data" in merged["cost"]["training"]
    served = served_from_run(run_dir, "adapter@rc")
    try:
        assert served.about["adapter_fingerprint"] == variant["model"]["adapter_fingerprint"]
    finally:
        served.engine.close()

    comparison = compare_variants(run_dir, n_resamples=50)
    assert {change.configuration for change in comparison.changes} == {"adapter@rc vs adapter"}
    assert {change.task for change in comparison.changes} == {"errno-qa", "perplexity"}
    try:
        main(["compare", str(run_dir), "--variants", "--resamples", "50"])
        code = 0
    except SystemExit as exit_info:
        code = exit_info.code
    assert code in (0, 1, 3)   # a verdict, not a usage error (2)
    assert "adapter@rc vs adapter" in capsys.readouterr().out

    artifacts = {name: (run_dir / "artifacts" / name).resolve() for name in ("lora", "lora@rc")}
    assert artifacts["lora"] != artifacts["lora@rc"]
    runner.run(load_spec(None, overrides))  # the same inputs: the same cache keys, nothing trained again
    assert {name: (run_dir / "artifacts" / name).resolve() for name in artifacts} == artifacts


@pytest.mark.slow
def test_a_synthetic_qa_variant_opens_its_generator_and_itemises_its_tokens(tmp_path, monkeypatch):
    import run.runner as runner

    monkeypatch.setenv("DOMAINBENCH_CACHE", str(tmp_path / "cache"))
    spec = tmp_path / "spec.yaml"
    spec.write_text("variants: {qa: {augment: {method: synthetic-qa, synthetic_qa: {max_new_tokens: 8}}}}\n")
    run_spec = load_spec(spec, {**run_overrides(tmp_path, ["finetuned@qa"]), "tasks": ["perplexity"]})
    run_dir = runner.run(run_spec)

    costs = json.loads((run_dir / "results" / "finetuned@qa" / "perplexity.json").read_text())["cost"]["training"]
    generator = costs["full@qa data"]["generator"]
    assert generator["device"] == "cpu" and generator["prompts"] == 2   # the suite's two train pages
    assert generator["generated_tokens"] > 0 and generator["generation_seconds"] > 0
    manifest = json.loads((run_dir / "artifacts" / "full@qa" / "domainbench_manifest.json").read_text())
    assert manifest["inputs"]["augment"]["generator"] == generator["fingerprint"]
    trained = (run_dir / "artifacts" / "full@qa").resolve()

    def must_not_generate(*args, **kwargs):
        raise AssertionError("the generator wrote again what it had written")

    monkeypatch.setattr("tuning.augment.synthetic_qa.GenerationRequest", must_not_generate)
    runner.run(run_spec)  # the generator's outputs are kept: the same data, the same artifact
    assert (run_dir / "artifacts" / "full@qa").resolve() == trained
    assert "full@qa data (augmentation: synthetic-qa, generator on cpu wrote " in (run_dir / "report.md").read_text()


@pytest.mark.slow
def test_the_generator_fingerprint_is_part_of_the_cache_key(tmp_path, monkeypatch, tiny_model_dir):
    from tasks.suite import load_suite
    from tuning.augment.synthetic_qa import Generator
    from tuning.recipe import load_recipe
    from tuning.strategies import tune

    monkeypatch.setenv("DOMAINBENCH_CACHE", str(tmp_path / "cache"))
    suite = load_suite(str(write_run_suite(tmp_path / "suite")))
    recipe = load_recipe("lora", config=tiny_recipes(tmp_path)["lora"],
                         overrides={"augment": {"method": "synthetic-qa"}})

    def echo(prompts):  # the same pairs from both generators: only the fingerprint differs
        return [" Which errno means the file exists?\nA: EEXIST" for _ in prompts]

    paths = {name: tune("lora", str(tiny_model_dir), suite, recipe=recipe, generator=Generator(echo, name))
             for name in ("generator-a", "generator-b")}
    assert paths["generator-a"] != paths["generator-b"]
