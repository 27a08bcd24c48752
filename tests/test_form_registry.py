"""The form registry: every form holds to the protocol, keeps its cache key, and a new form is one definition."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.errors import DomainbenchError
from harness.manifest import input_hash
from run.spec import ADAPTERS, WEIGHTS, load_spec, parse_configuration
from tests.test_runner import write_run_suite
from tuning.forms import (
    Form,
    FormBuild,
    FormSource,
    FormUse,
    form_inputs,
    form_names,
    get_form,
    register_form,
    registered_forms,
    unregister_form,
)
from tuning.forms.base import ENGINE_KINDS
from tuning.artifact import TRAINING_CODE
from tuning.forms.gguf import GGUF_TYPES


@pytest.mark.parametrize("form", registered_forms(), ids=lambda form: form.name)
def test_every_form_holds_to_the_protocol(form: Form):
    assert form.name.isidentifier() and form.name not in {*WEIGHTS, *ADAPTERS, "rag"}
    assert callable(form.make) and callable(form.inputs) and callable(form.requirements)
    chain = f"adapter+{form.name}" if form.merges else f"base+{form.name}"
    assert parse_configuration(chain).forms == (form.name,)
    assert form.merges is None or form.merges in ADAPTERS.values()
    for setting in form.settings.values():
        assert setting.default in setting.allowed
    assert set(form.excludes) <= set(form_names()) - {form.name}
    assert bool(form.excludes) == bool(form.excludes_why)
    assert (form.recipe is None) == (form.load_recipe is None)
    if form.load_recipe:
        assert isinstance(form.load_recipe(None, "quick"), dict)  # the defaults load
    build = FormBuild(FormSource(Path("parent"), "p" * 64), {name: setting.allowed[0] for name, setting in form.settings.items()},
                      recipe={}, suite=SimpleNamespace(name="s", fingerprint="f" * 64))
    json.dumps(form.inputs(build))  # the cache key is canonical JSON
    use = FormUse((parse_configuration(chain),), "tiny-random-llama")
    assert all(isinstance(problem, str) and problem.startswith(chain) for problem in form.requirements(use))
    assert form.gpu_only is None or form.gpu_only.strip()
    assert form.engine in ENGINE_KINDS and (form.engine == "hf" or not form.vllm_servable)
    assert all(isinstance(library, str) for library in form.libraries)


def test_builtin_forms_keep_their_chain_order():
    assert form_names() == ("merged", "pruned", "int8", "nf4", "gguf")


def test_gguf_types_are_the_exporters():
    from tuning.gguf_export import QUANT_TYPES

    assert GGUF_TYPES == tuple(QUANT_TYPES)


def test_a_taken_name_or_place_in_the_chain_is_refused():
    with pytest.raises(ValueError, match="taken"):
        register_form(Form(name="int8", order=999, make=copy_parent))
    with pytest.raises(ValueError, match="taken by 'int8'"):
        register_form(Form(name="int4", order=get_form("int8").order, make=copy_parent))
    assert "int4" not in form_names()


# What every builtin form's artifact is keyed by (before the registry, tuning/forms.py at c02f2e1, without
# the code versions and the pruned form's training code): a refactor must keep the hash, or every cached
# form is built again. The versions are pinned too, so the hash is this machine's and any other's.
PINNED_INPUTS = {
    "merged": ({"adapter": "a" * 64, "settings": {}}, "d81218ccece454fc38f2cb11dc6cc82a816348227cde71df2057ac6f5f1a4617"),
    "pruned": ({"settings": {}, "prune": {"method": {"ratio": 0.25}, "seed": 3},
                "suite": {"name": "tiny", "fingerprint": "s" * 64}, "training": None}, "bbede59ba21ad9cc39b03d781035885a4667bf3ceea2cbb7c8b1b930bfcea426"),
    "int8": ({"settings": {"int8": "dynamic"}}, "6da8947ff6e18e78a6cbb4e4f3bed0814e188252ec42b4b8bd05a973f97136fe"),
    "nf4": ({"settings": {}}, "53391ce27f20a76875fbb7335f6fe84a6f83f1acfad0c940b1c262f0b6bb46f4"),
    "gguf": ({"settings": {"gguf_type": "f16"}, "gguf_source": "/models/smollm2.gguf"}, "5ee8fe4e895fec1d4a58e19b9f7cdb669a16698b0eadba2c00a1500dc578c5fa"),
}
PINNED_LIBRARIES = {"merged": ["peft"], "pruned": [], "int8": ["torchao"], "nf4": ["bitsandbytes"],
                    "gguf": ["llama-cpp-python", "gguf"]}


@pytest.mark.parametrize("name", PINNED_INPUTS)
def test_each_builtin_form_keeps_its_cache_key(name, monkeypatch):
    import harness
    import harness.manifest

    monkeypatch.setattr(harness, "__version__", "0.1.0")
    monkeypatch.setattr(harness.manifest, "installed_version", lambda distribution: f"{distribution}-1.0")
    merges = get_form(name).merges is not None
    source = FormSource(Path("/tmp/forms-pin"), "p" * 64, adapter=Path("/a") if merges else None,
                        adapter_fingerprint="a" * 64 if merges else None, gguf=Path("/models/smollm2.gguf"))
    build = FormBuild(source, {"int8": "dynamic", "gguf_type": "f16"},
                      recipe={"method": {"ratio": 0.25}, "seed": 3} if get_form(name).recipe else None,
                      suite=SimpleNamespace(name="tiny", fingerprint="s" * 64))
    pinned, key = PINNED_INPUTS[name]
    code = {"domainbench": "0.1.0", **{library: f"{library}-1.0"
                                       for library in ["torch", "transformers", *PINNED_LIBRARIES[name]]}}
    expected = {"form": name, "parent": "p" * 64, "adapter": None, "prune": None, "suite": None, "gguf_source": None,
                **pinned, "schema": 1, "code": code}
    inputs = form_inputs(name, build)
    assert list(inputs) == ["form", "parent", "adapter", "settings", "prune", "suite", "gguf_source",
                            *(["training"] if name == "pruned" else []), "schema", "code"]
    assert inputs == expected and input_hash(inputs) == key


def test_a_form_is_made_again_when_the_code_that_makes_it_changes(monkeypatch):
    import harness.manifest

    build = FormBuild(FormSource(Path("/tmp/forms-pin"), "p" * 64), {"int8": "dynamic"})
    before = input_hash(form_inputs("int8", build))
    installed = harness.manifest.installed_version
    monkeypatch.setattr(harness.manifest, "installed_version",
                        lambda name: "99.0" if name == "torchao" else installed(name))
    assert input_hash(form_inputs("int8", build)) != before
    healing = FormBuild(FormSource(Path("/tmp/forms-pin"), "p" * 64), {},
                        recipe={"method": {"ratio": 0.25, "heal_steps": 4}, "seed": 3},
                        suite=SimpleNamespace(name="tiny", fingerprint="s" * 64))
    assert form_inputs("pruned", healing)["training"] == TRAINING_CODE


# ----- a toy form: one definition and one registration --------------------------------------------

def copy_parent(build: FormBuild, directory: Path) -> dict:
    """The parent's model files, unchanged: a form that must score exactly like its parent."""
    shutil.copytree(build.source.path, directory, dirs_exist_ok=True)
    return {"copied_from": str(build.source.path)}


@pytest.fixture
def copy_form():
    yield register_form(Form(name="copy", order=60, make=copy_parent))
    unregister_form("copy")


def test_a_new_form_is_run_paired_with_its_parent_and_served(copy_form, tmp_path, monkeypatch):
    from cli.main import main
    from harness.requests import GenerationRequest
    from reports.parity import form_parities
    from reports.summary import load_run_results
    from serve.served import served_from_run
    from stats.verdicts import IDENTICAL

    monkeypatch.setenv("DOMAINBENCH_CACHE", str(tmp_path / "cache"))
    suite = write_run_suite(tmp_path / "suite")
    main(["run", "--name", "toy", "--suite", str(suite), "--model", "tiny-random-llama", "--device", "cpu",
          "--dtype", "float32", "--profile", "quick", "--limit", "2", "--configurations", "base,base+copy",
          "--output", str(tmp_path / "runs")])
    run_dir = tmp_path / "runs" / "toy"

    copied = json.loads((run_dir / "results" / "base+copy" / "perplexity.json").read_text())
    assert copied["model"]["forms"] == ["copy"] and copied["model"]["parent"] == "base"
    assert copied["cost"]["training"]["base+copy"]["form"] == "copy"
    [parity] = form_parities(load_run_results(run_dir))
    assert (parity.configuration, parity.parent) == ("base+copy", "base") and parity.changes
    assert all(change.decision.verdict == IDENTICAL for change in parity.changes)
    assert "### base+copy vs base" in (run_dir / "report.md").read_text()

    served = served_from_run(run_dir, "base+copy", device="cpu")
    assert served.about["fingerprint"] == copied["model"]["fingerprint"]
    [answer] = served.engine.generate([GenerationRequest("Question: Which errno?\nAnswer:", max_new_tokens=4)])
    assert isinstance(answer, str)


def test_a_new_form_takes_its_place_in_the_chain(copy_form):
    spec = load_spec(None, {"configurations": ["base+copy"]})
    assert spec.configuration_names("quick") == ["base", "base+copy"]
    with pytest.raises(DomainbenchError, match="forms apply in the order .* -> gguf -> copy"):
        parse_configuration("copy+gguf")


def test_a_new_form_declares_its_own_setting_in_its_one_file(tmp_path):
    from tuning.forms import FormSetting, form_inputs

    spec_file = tmp_path / "spec.yaml"
    register_form(Form(name="copy", order=60, make=copy_parent,
                       settings={"copy_mode": FormSetting("plain", ("plain", "verbatim"))}))
    try:
        assert load_spec(None, {}).forms["copy_mode"] == "plain"  # its default, where the spec says nothing
        spec_file.write_text("forms: {copy_mode: verbatim}\n")
        assert load_spec(spec_file, {}).forms == {"gguf_type": "q8_0", "int8": "weight-only", "copy_mode": "verbatim"}
        build = FormBuild(FormSource(Path("parent"), "p" * 64), load_spec(spec_file, {}).forms)
        assert form_inputs("copy", build)["settings"] == {"copy_mode": "verbatim"}  # in its cache key
        spec_file.write_text("forms: {copy_mode: fast}\n")
        with pytest.raises(DomainbenchError, match=r"forms.copy_mode: 'fast' is not one of plain, verbatim"):
            load_spec(spec_file, {})
    finally:
        unregister_form("copy")
    spec_file.write_text("forms: {copy_mode: verbatim}\n")
    with pytest.raises(DomainbenchError, match=r"forms.copy_mode: unknown run spec field \(known: forms.gguf_type"):
        load_spec(spec_file, {})
