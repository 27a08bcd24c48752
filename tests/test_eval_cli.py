"""`domainbench eval` end to end on tiny-random-llama and the tiny suite, and the result schema."""

import json

import pytest

from cli.main import main
from harness.errors import DomainbenchError
from reports.schema import SCHEMA_VERSION, load_result, result_path
from tasks.evaluate import rescore
from tasks.suite import load_suite


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DOMAINBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module")
def run_dir(cache, tmp_path_factory):
    output = tmp_path_factory.mktemp("run")
    main(["eval", "--model", "tiny-random-llama", "--suite", "tiny", "--output", str(output), "--device", "cpu",
          "--batch-tokens", "2048"])
    return output


def test_eval_writes_one_result_per_task_with_intervals(run_dir):
    suite = load_suite("tiny")
    for task in suite.tasks:
        result = load_result(result_path(run_dir, "base", task.name))
        assert result.schema_version == SCHEMA_VERSION
        assert (result.run, result.configuration, result.task, result.task_type) == (
            run_dir.name, "base", task.name, task.type)
        assert result.suite["fingerprint"] == suite.fingerprint
        assert len(result.model["fingerprint"]) == 64
        assert set(result.metrics) >= set(m for m in task.metrics if m != "f1_per_type")
        for metric in result.metrics.values():
            assert metric["ci_low"] <= metric["value"] <= metric["ci_high"]
            assert metric["n"] == len(task.examples["test"])
        assert [e["id"] for e in result.examples] == [ex["id"] for ex in task.examples["test"]]
        assert {"split", "num_fewshot", "fewshot_seed", "template", "batch_tokens", "bootstrap"} <= result.settings.keys()
        assert result.settings["batch_tokens"] == 2048
        assert result.cost["eval_seconds"] > 0 and result.cost["seconds_per_example"] > 0
        assert {"domainbench", "torch", "transformers"} <= result.versions.keys()
        _, metrics = rescore(task, result.examples)
        assert {name: m.as_dict() for name, m in metrics.items()} == result.metrics


def test_eval_prints_a_table_of_metrics_with_intervals(cache, tmp_path, capsys):
    main(["eval", "--model", "tiny-random-llama", "--suite", "tiny", "--tasks", "section-classification",
          "--limit", "2", "--configuration", "tiny-v2", "--output", str(tmp_path)])
    out = capsys.readouterr().out
    assert "section-classification" in out and "accuracy" in out and "95% CI" in out
    written = sorted(p.name for p in (tmp_path / "results" / "tiny-v2").iterdir())
    assert written == ["section-classification.json"]
    assert len(load_result(tmp_path / "results/tiny-v2/section-classification.json").examples) == 2


@pytest.mark.parametrize("flags, message", [
    (["--configuration", "base+gguf"], "--configuration base+gguf: eval does not build the gguf form; "
                                       "`domainbench run --configurations base+gguf` builds and evaluates it"),
    (["--configuration", "adapter+merged"], "eval does not build the merged form"),
    (["--configuration", "rag"], "--configuration rag: names rag, but --rag-index is missing"),
    (["--configuration", "adapter"], "--configuration adapter: names an adapter, but --adapter is missing"),
])
def test_a_configuration_name_that_promises_what_eval_does_not_do_is_refused(tmp_path, capsys, flags, message):
    output = tmp_path / "run"
    with pytest.raises(SystemExit) as exited:
        main(["eval", "--model", "tiny-random-llama", "--suite", "tiny", "--output", str(output), *flags])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not output.exists()


def test_results_are_labelled_by_what_the_flags_evaluate_or_by_a_free_name(tmp_path):
    from cli.eval import _configuration_label

    index, adapter = tmp_path / "index", tmp_path / "adapter"
    assert _configuration_label(None, adapter=None, rag_index=None) == "base"
    assert _configuration_label(None, adapter=adapter, rag_index=index) == "adapter+rag"
    assert _configuration_label("prefix+rag", adapter=adapter, rag_index=index) == "prefix+rag"
    assert _configuration_label("finetuned", adapter=None, rag_index=None) == "finetuned"  # the model given
    assert _configuration_label("my-model.v2", adapter=adapter, rag_index=None) == "my-model.v2"
    with pytest.raises(DomainbenchError, match="does not name an adapter, but --adapter is given"):
        _configuration_label("base", adapter=adapter, rag_index=None)


def test_an_unknown_task_name_exits_2(cache, tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["eval", "--model", "tiny-random-llama", "--suite", "tiny", "--tasks", "nope", "--output", str(tmp_path)])
    assert exited.value.code == 2
    assert "no task 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


def test_a_result_file_from_an_older_schema_is_refused(run_dir, tmp_path):
    record = json.loads(result_path(run_dir, "base", "errno-qa").read_text())
    record["schema_version"] = SCHEMA_VERSION - 1
    old = tmp_path / "old.json"
    old.write_text(json.dumps(record))
    with pytest.raises(DomainbenchError, match="schema_version.*rerun"):
        load_result(old)


def test_result_files_are_written_atomically(run_dir):
    leftovers = [p for p in (run_dir / "results" / "base").iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_eval_puts_a_peft_adapter_on_the_model(cache, tmp_path, tiny_model_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    # init_lora_weights=False: random B matrices, so the adapter really changes the outputs.
    adapted = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    adapted.save_pretrained(tmp_path / "adapter")
    args = ["eval", "--model", str(tiny_model_dir), "--suite", "tiny", "--tasks", "manpage-perplexity"]
    main([*args, "--output", str(tmp_path / "plain")])
    main([*args, "--output", str(tmp_path / "lora"), "--adapter", str(tmp_path / "adapter")])
    plain = load_result(result_path(tmp_path / "plain", "base", "manpage-perplexity"))
    lora = load_result(result_path(tmp_path / "lora", "adapter", "manpage-perplexity"))  # filed by what it evaluates
    assert lora.model["adapter"] == str(tmp_path / "adapter")
    assert lora.metrics["token_perplexity"]["value"] != plain.metrics["token_perplexity"]["value"]


def test_eval_refuses_a_directory_that_is_not_an_adapter(cache, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--model", "tiny-random-llama", "--suite", "tiny", "--adapter", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "no adapter_config.json" in capsys.readouterr().err


def test_a_device_this_machine_lacks_exits_2_naming_the_flag(cache, tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["eval", "--model", "tiny-random-llama", "--suite", "tiny", "--device", "tpu", "--output", str(tmp_path)])
    assert exited.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --device 'tpu': not a device of this machine (available: cpu")
    assert not (tmp_path / "results").exists()
