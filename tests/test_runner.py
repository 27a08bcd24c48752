"""`domainbench run`: every configuration trained, indexed, evaluated and reported; reruns resume."""

from __future__ import annotations

import gzip
import json

import pytest

from harness.errors import DomainbenchError
from run.spec import load_spec, parse_configuration

ERRNOS = {"EACCES": "permission is denied", "EEXIST": "the file already exists", "ENOENT": "the file does not exist",
          "EINTR": "a signal interrupted the call", "EINVAL": "an argument is invalid"}


def write_run_suite(root):
    """QA with source pages, perplexity, and a corpus of pages: what every configuration needs."""
    root.mkdir(parents=True)
    pages = [{"id": f"{name.lower()}.2", "title": f"{name.lower()}(2)", "section": "2", "split": split,
              "text": f"NAME\n{name.lower()} - an error page\nERRORS\n{name} {why}.\n" * 4}
             for (name, why), split in zip(ERRNOS.items(), ["train", "train", "dev", "test", "test"])]
    with gzip.open(root / "corpus.jsonl.gz", "wt") as handle:
        handle.writelines(json.dumps(page) + "\n" for page in pages)
    questions = [{"id": f"q-{page['id']}", "question": f"Which errno means {why}?", "answers": [name],
                  "source": {"doc_id": page["id"], "section": "ERRORS"}}
                 for page, (name, why) in zip(pages, ERRNOS.items())]
    for split, rows in {"train": questions[:2], "dev": questions[2:3], "test": questions[3:]}.items():
        (root / f"qa-{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    texts = [{"id": f"t{i}", "text": page["text"]} for i, page in enumerate(pages)]
    (root / "ppl-dev.jsonl").write_text(json.dumps(texts[2]) + "\n")
    (root / "ppl-test.jsonl").write_text("".join(json.dumps(t) + "\n" for t in texts[3:]))
    (root / "suite.yaml").write_text(
        "name: runsuite\nversion: 1\ncorpus: corpus.jsonl.gz\ntasks:\n"
        "  - name: errno-qa\n    type: qa\n    data: {train: qa-train.jsonl, dev: qa-dev.jsonl, test: qa-test.jsonl}\n"
        "    template: \"Question: {question}\\nAnswer:\"\n    num_fewshot: 1\n"
        "    generation: {max_new_tokens: 6, stop: [\"\\n\"]}\n"
        "  - name: perplexity\n    type: perplexity\n    data: {dev: ppl-dev.jsonl, test: ppl-test.jsonl}\n")
    return root


def tiny_recipes(tmp_path):
    """Recipes small enough for the tiny model: a few steps of 32 tokens."""
    recipes = {}
    for strategy in ("full", "lora", "distill"):
        path = tmp_path / f"{strategy}.yaml"
        path.write_text("data: {seq_len: 32, max_train_examples: 8, max_dev_examples: 2}\n"
                        "train: {max_steps: 3, batch_size: 2, grad_accum: 1, warmup_steps: 1, eval_every: 3, "
                        "checkpoint_every: 3}\n")
        recipes[strategy] = str(path)
    return recipes


def test_configurations_compose_and_bad_ones_are_refused():
    assert parse_configuration("adapter+rag").adapter == "lora"
    assert parse_configuration("adapter+rag").rag
    assert parse_configuration("distilled").weights == "distilled"
    for bad, message in [("rag+rag", "twice"), ("finetuned+distilled", "two sets of weights"),
                         ("finetuned+adapter", "base weights only"), ("magic", "unknown part 'magic'")]:
        with pytest.raises(DomainbenchError, match=message):
            parse_configuration(bad)


def test_spec_names_the_wrong_field(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("suite: tiny\nconfigurtions: [base]\n")
    with pytest.raises(DomainbenchError, match="configurtions: unknown run spec field"):
        load_spec(spec, {})
    spec.write_text("configurations: [base, ragg]\n")
    with pytest.raises(DomainbenchError, match="unknown part 'ragg'"):
        load_spec(spec, {})
    spec.write_text("profile: fast\n")
    with pytest.raises(DomainbenchError, match="profile: 'fast'"):
        load_spec(spec, {})


@pytest.mark.slow
def test_run_evaluates_every_configuration_then_resumes(tmp_path, monkeypatch):
    import run.runner as runner

    monkeypatch.setenv("DOMAINBENCH_CACHE", str(tmp_path / "cache"))
    suite = write_run_suite(tmp_path / "suite")
    overrides = {"name": "r1", "suite": str(suite), "model": "tiny-random-llama", "output": str(tmp_path / "runs"),
                 "profile": "quick", "device": "cpu", "recipes": tiny_recipes(tmp_path),
                 "configurations": ["base", "rag", "adapter", "finetuned", "distilled", "adapter+rag"]}
    run_dir = runner.run(load_spec(None, overrides))

    for configuration in overrides["configurations"]:
        for task in ("errno-qa", "perplexity"):
            result = json.loads((run_dir / "results" / configuration / f"{task}.json").read_text())
            assert result["metrics"] and result["settings"]["input_key"]
    rag_qa = json.loads((run_dir / "results" / "adapter+rag" / "errno-qa.json").read_text())
    assert "recall@4" in rag_qa["metrics"] and "mrr" in rag_qa["metrics"]
    assert all(example["retrieved"] for example in rag_qa["examples"])
    assert rag_qa["cost"]["training"]["lora"]["trainable_parameters"] > 0
    assert {name: block["purpose"] for name, block in rag_qa["cost"]["training"].items()} == {
        "lora": "adapter", "index": "index"}
    from harness.models import default_dtype

    used = str(default_dtype("cpu")).removeprefix("torch.")  # --dtype auto: bf16 where the CPU has it
    assert (rag_qa["settings"]["device"], rag_qa["settings"]["dtype"]) == ("cpu", used)
    distilled = json.loads((run_dir / "results" / "distilled" / "perplexity.json").read_text())["cost"]["training"]
    assert {name: block["purpose"] for name, block in distilled.items()} == {"full": "teacher", "distill": "weights"}
    assert all(block["peak_memory_kind"] == "cpu_peak_rss" and "converged" in block["convergence"]
               for block in distilled.values())
    finetuned = json.loads((run_dir / "results" / "finetuned" / "perplexity.json").read_text())["model"]
    student = json.loads((run_dir / "artifacts" / "distill" / "domainbench_manifest.json").read_text())
    assert student["inputs"]["teacher"]["fingerprint"] == finetuned["fingerprint"]  # the teacher it evaluates
    rag_ppl = json.loads((run_dir / "results" / "adapter+rag" / "perplexity.json").read_text())
    adapter_ppl = json.loads((run_dir / "results" / "adapter" / "perplexity.json").read_text())
    assert rag_ppl["settings"]["same_as"] == "adapter" and rag_ppl["settings"]["rag"] == {"mode": "off"}
    assert rag_ppl["metrics"] == adapter_ppl["metrics"]  # perplexity's rag mode is off: the twin's result
    base_ppl = json.loads((run_dir / "results" / "base" / "perplexity.json").read_text())["metrics"]
    tuned_ppl = json.loads((run_dir / "results" / "finetuned" / "perplexity.json").read_text())["metrics"]
    assert base_ppl["token_perplexity"]["value"] != tuned_ppl["token_perplexity"]["value"]
    for name in ("report.md", "report.html", "summary.json", "summary.csv", "run.yaml"):
        assert (run_dir / name).is_file()
    assert (run_dir / "artifacts" / "lora" / "adapter_config.json").is_file()

    def must_not_evaluate(*args, **kwargs):
        raise AssertionError("a finished result was recomputed")

    monkeypatch.setattr(runner, "evaluate_task", must_not_evaluate)
    runner.run(load_spec(None, overrides))  # everything reused

    calls = []
    monkeypatch.setattr(runner, "evaluate_task", lambda *a, **k: calls.append(a) or must_not_evaluate())
    (run_dir / "results" / "rag" / "errno-qa.json").unlink()
    with pytest.raises(AssertionError):
        runner.run(load_spec(None, overrides))
    assert len(calls) == 1  # only the missing result is recomputed


def test_a_result_is_reused_only_for_the_device_and_dtype_it_was_computed_with(tmp_path):
    from run.artifacts import Artifact, Prepared
    from run.evaluations import input_key
    from tasks.suite import load_suite

    task = load_suite("tiny").tasks[0]
    spec = load_spec(None, {})
    weights = {"base": Artifact("base", tmp_path, "f" * 64)}

    def key(device, dtype):
        prepared = Prepared(weights=weights, adapters={}, forms={}, index=None, limit=16, rag_context_tokens=448,
                            device=device, dtype=dtype)
        return input_key(parse_configuration("base"), task, prepared, spec)

    assert key("cpu", "float32") != key("cpu", "bfloat16")
    assert key("cpu", "bfloat16") != key("cuda", "bfloat16")
    assert key("cuda:0", "bfloat16") == key("cuda:1", "bfloat16")


def test_a_result_is_reused_only_under_the_code_and_resolved_settings_it_was_computed_with(tmp_path, monkeypatch):
    import dataclasses

    import harness
    import harness.manifest as manifest
    import run.evaluations as evaluations
    from run.artifacts import Artifact, Prepared
    from tasks.registry import task_module
    from tasks.suite import load_suite

    task = load_suite("tiny").tasks[0]
    spec = load_spec(None, {})
    prepared = Prepared(weights={"base": Artifact("base", tmp_path, "f" * 64)},
                        adapters={"lora": Artifact("lora", tmp_path, "d" * 64)},
                        forms={"base+gguf": Artifact("base+gguf", tmp_path, "e" * 64),
                               "base+int8": Artifact("base+int8", tmp_path, "c" * 64)}, index=None, limit=16,
                        rag_context_tokens=448, device="cpu", dtype="float32")

    def key(configuration="base", task=task):
        return evaluations.input_key(parse_configuration(configuration), task, prepared, spec)

    before, before_adapter, before_gguf, before_int8 = key(), key("adapter"), key("base+gguf"), key("base+int8")
    # A default from the code (the suite.yaml entry, hence the task fingerprint, is unchanged).
    assert key(task=dataclasses.replace(task, template=task.template + " ")) != before
    assert key(task=dataclasses.replace(task, generation={**(task.generation or {}), "stop": ["\n\n"]})) != before
    scoring = task_module(task.type).scoring_settings
    monkeypatch.setattr(task_module(task.type), "scoring_settings", lambda t: {**scoring(t), "normalization": "new"})
    assert key() != before
    monkeypatch.undo()
    monkeypatch.setattr(harness, "__version__", "9.9.9")
    assert key() != before
    monkeypatch.undo()
    installed = manifest.installed_version
    for library, configuration, previous in (("torch", "base", before), ("transformers", "base", before),
                                             ("peft", "adapter", before_adapter),
                                             ("llama-cpp-python", "base+gguf", before_gguf),
                                             ("torchao", "base+int8", before_int8)):
        monkeypatch.setattr(manifest, "installed_version", lambda name, library=library: (
            "99.0" if name == library else installed(name)))
        assert key(configuration) != previous, library
    assert key("base") == before  # neither PEFT, llama.cpp nor torchao computes the plain model's scores


def test_default_configurations_follow_the_profile():
    spec = load_spec(None, {})
    assert spec.configuration_names("quick") == ["base", "rag", "adapter", "finetuned"]
    assert spec.configuration_names("full") == ["base", "rag", "adapter", "finetuned", "adapter+rag", "distilled",
                                                "prefix"]
    assert "distilled" in load_spec(None, {"configurations": ["base", "distilled"]}).configuration_names("quick")
    assert load_spec(None, {"configurations": ["base"]}).configuration_names("full") == ["base"]
