"""Bad specs, suites and result files are refused with the file, line and field named, before they cost memory."""

from __future__ import annotations

import json

import pytest
from report_runs import qa_result, write_run
from test_runner import write_run_suite

from cli.main import main
from tasks.datafiles import MAX_EXAMPLE_CHARS, MAX_YAML_VALUES

BILLION_LAUGHS = "lol0: &a0 [lol]\n" + "".join(
    f"lol{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 10))


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DOMAINBENCH_CACHE", str(tmp_path / "cache"))


def error_lines(capsys, *args: str) -> list[str]:
    """Run the CLI; assert exit 2; return the lines of the error."""
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    err = capsys.readouterr().err
    assert exited.value.code == 2, err
    return err[err.index("error: "):].splitlines()


def refused_spec(tmp_path, capsys, content: bytes | str) -> str:
    spec = tmp_path / "spec.yaml"
    spec.write_bytes(content if isinstance(content, bytes) else content.encode())
    lines = error_lines(capsys, "run", str(spec), "--output", str(tmp_path / "runs"))
    assert len(lines) == 1 and not (tmp_path / "runs").exists(), lines
    return lines[0]


# ----- run specs -------------------------------------------------------------------------------------

def test_a_binary_spec_file_is_one_line(tmp_path, capsys):
    line = refused_spec(tmp_path, capsys, bytes(range(256)) * 4)
    assert "spec.yaml:2: encoding: not UTF-8 text (byte 0x80)" in line


def test_a_spec_with_a_key_given_twice_names_the_key_and_line(tmp_path, capsys):
    line = refused_spec(tmp_path, capsys, "name: first\nsuite: tiny\nname: second\n")
    assert "spec.yaml:3: yaml: duplicate key 'name' (first on line 1)" in line


def test_a_yaml_bomb_in_a_spec_is_refused_before_it_expands(tmp_path, capsys):
    line = refused_spec(tmp_path, capsys, BILLION_LAUGHS)
    assert f"yaml: aliases (*name) expand this to more than {MAX_YAML_VALUES:,} values" in line


def test_a_spec_may_use_a_few_aliases(tmp_path):
    from run.spec import load_spec

    spec = tmp_path / "spec.yaml"
    spec.write_text("rag: &settings {k: 2}\nrecipes: {}\nconfigurations: &c [base]\ntasks: null\n")
    assert load_spec(spec, {}).rag.k == 2


# ----- suites ---------------------------------------------------------------------------------------

def test_a_yaml_bomb_in_suite_yaml_is_refused_by_validate(tmp_path, capsys):
    suite = write_run_suite(tmp_path / "suite")
    (suite / "suite.yaml").write_text((suite / "suite.yaml").read_text() + BILLION_LAUGHS.replace("lol", "x-lol"))
    lines = error_lines(capsys, "suite", "validate", str(suite))
    assert any(f"yaml: aliases (*name) expand this to more than {MAX_YAML_VALUES:,} values" in line
               for line in lines), lines


def test_a_duplicate_key_in_suite_yaml_is_refused_naming_its_line(tmp_path, capsys):
    suite = write_run_suite(tmp_path / "suite")
    text = (suite / "suite.yaml").read_text().replace("version: 1\n", "version: 1\nname: again\n")
    (suite / "suite.yaml").write_text(text)
    lines = error_lines(capsys, "suite", "validate", str(suite))
    assert "suite.yaml:3: yaml: duplicate key 'name' (first on line 1)" in lines[0]


def test_an_example_on_one_enormous_line_is_refused_before_run_reads_it(tmp_path, capsys):
    suite = write_run_suite(tmp_path / "suite")
    huge = json.dumps({"id": "t-huge", "text": "x" * (MAX_EXAMPLE_CHARS + 1)})
    with open(suite / "ppl-test.jsonl", "a") as handle:
        handle.write(huge + "\n")
    lines = error_lines(capsys, "suite", "validate", str(suite))
    assert any("ppl-test.jsonl:3: example: 1,000,0" in line and "characters on one example" in line
               for line in lines), lines
    lines = error_lines(capsys, "run", "--suite", str(suite), "--model", "tiny-random-llama",
                        "--configurations", "base", "--output", str(tmp_path / "runs"))
    assert any("characters on one example" in line for line in lines)
    assert not (tmp_path / "runs").exists()


# ----- result files --------------------------------------------------------------------------------

@pytest.mark.parametrize("field, value, expected", [
    ("metrics", {"exact_match": {"value": "0.5", "ci_low": 0.1, "ci_high": 0.9, "n": 3}},
     "metrics.exact_match.value: expected a number or null, got '0.5'"),
    ("examples", "all of them", "examples: expected list, got 'all of them'"),
    ("examples", [["q-1", "E1"]], "examples[0]: expected an object"),
    ("settings", [], "settings: expected dict, got []"),
])
@pytest.mark.parametrize("command", ["report", "rescore"])
def test_a_result_file_with_a_value_of_the_wrong_type_is_one_line(tmp_path, capsys, command, field, value, expected):
    run_dir = write_run(tmp_path / "run", [qa_result("r", "base", 2, n=3)])
    path = next((run_dir / "results").glob("*/*.json"))
    record = json.loads(path.read_text())
    record[field] = value
    path.write_text(json.dumps(record))
    lines = error_lines(capsys, command, str(run_dir))
    assert len(lines) == 1 and f"{path}: {expected}" in lines[0], lines


def test_stored_scores_that_cannot_be_rescored_are_one_line(tmp_path, capsys):
    run_dir = write_run(tmp_path / "run", [qa_result("r", "base", 2, n=3)])
    path = next((run_dir / "results").glob("*/*.json"))
    record = json.loads(path.read_text())
    record["examples"][0]["reference"] = 42  # a QA reference is a list of answers
    path.write_text(json.dumps(record))
    lines = error_lines(capsys, "rescore", str(run_dir))
    assert len(lines) == 1 and f"{path}: examples: stored scores cannot be rescored" in lines[0], lines


def test_the_builtin_suites_stay_valid_under_the_limits():
    for name in ("tiny", "manpages"):
        main(["suite", "validate", name])
