"""Suite loading and validation: every problem reported as file:line: field: problem, at once."""

import json
import textwrap

import pytest

from cli.main import main
from harness.errors import DomainbenchError
from tasks.suite import load_suite
from tasks.suite_files import builtin_suites


def write_jsonl(path, rows):
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))


@pytest.fixture
def good_suite(tmp_path):
    write_jsonl(tmp_path / "qa.jsonl", [{"id": "q1", "question": "Which errno?", "answers": ["EINTR"]},
                                        {"id": "q2", "question": "Which header?", "answers": ["<unistd.h>"]}])
    (tmp_path / "cls.csv").write_text('id,text,label\nc1,"read, write",2\nc2,printf,3\n')
    (tmp_path / "suite.yaml").write_text(textwrap.dedent("""\
        name: mine
        tasks:
          - name: qa
            type: qa
            data: {train: qa.jsonl, test: qa.jsonl}
            num_fewshot: 1
          - name: cls
            type: classification
            data: {test: cls.csv}
            labels: {2: " system call", 3: " library function"}
        """))
    return tmp_path


@pytest.fixture
def broken_suite(tmp_path):
    write_jsonl(tmp_path / "qa.jsonl", [
        {"id": "q1", "question": "ok?", "answers": ["yes"]},
        '{"id": "q2", "question": "broken"',                       # line 2: malformed JSON
        {"id": "q3", "answers": ["x"]},                            # line 3: question missing
        {"id": "q4", "question": "one answer", "answers": "x"},    # line 4: answers not a list
    ])
    write_jsonl(tmp_path / "cls.jsonl", [
        {"id": "c1", "text": "read", "label": "2"},
        {"id": "c2", "text": "printf", "label": "9"},             # line 2: label not in the set
    ])
    write_jsonl(tmp_path / "ner.jsonl", [
        {"id": "n1", "text": "read() fails", "entities": [{"type": "FUNC", "start": 0, "end": 6}]},
        {"id": "n2", "text": "short", "entities": [{"type": "FUNCTION", "start": 2, "end": 40}]},
    ])
    (tmp_path / "empty.jsonl").write_text("\n")
    (tmp_path / "suite.yaml").write_text(textwrap.dedent("""\
        name: broken
        tasks:
          - name: qa
            type: qa
            data: {test: qa.jsonl}
            template: "Q: {questoin}\\nA:"
          - name: cls
            type: classification
            data: {test: cls.jsonl}
            labels: {"2": " system call", "3": " library function"}
          - name: what
            type: translation
            data: {test: qa.jsonl}
          - name: ner
            type: ner
            data: {test: ner.jsonl}
            labels: [FUNCTION]
          - name: ppl
            type: perplexity
            data: {test: empty.jsonl}
        """))
    return tmp_path


EXPECTED_PROBLEMS = [
    "suite.yaml:6: qa.template: names field 'questoin'",
    "qa.jsonl:2: json: malformed JSON",
    "qa.jsonl:3: question: missing field",
    "qa.jsonl:4: answers: expected a list",
    "cls.jsonl:2: label: '9' is not in the label set",
    "suite.yaml:12: what.type: unknown task type 'translation'",
    "ner.jsonl:1: entities[0].type: 'FUNC' is not in the label set",
    "ner.jsonl:2: entities[0].start: offsets 2..40",
    "suite.yaml:20: ppl.data.test: empty split",
]


def test_every_problem_is_reported_with_file_line_and_field(broken_suite):
    with pytest.raises(DomainbenchError) as caught:
        load_suite(broken_suite)
    message = str(caught.value)
    for expected in EXPECTED_PROBLEMS:
        assert expected in message, f"{expected!r} not in:\n{message}"


def test_validate_command_lists_all_problems_and_exits_2(broken_suite, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["suite", "validate", str(broken_suite)])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert all(expected in err for expected in EXPECTED_PROBLEMS)


def test_eval_on_a_broken_suite_writes_nothing(broken_suite, tmp_path, capsys):
    output = tmp_path / "run"
    with pytest.raises(SystemExit) as exited:
        main(["eval", "--model", "tiny-random-llama", "--suite", str(broken_suite), "--output", str(output)])
    assert exited.value.code == 2
    assert "unknown task type" in capsys.readouterr().err
    assert not output.exists()


def test_a_user_suite_directory_loads_like_a_builtin(good_suite):
    suite = load_suite(good_suite)
    assert [task.name for task in suite.tasks] == ["qa", "cls"]
    qa, cls = suite.tasks
    assert qa.template == "Question: {question}\nAnswer:"  # the type's default, filled in
    assert qa.generation == {"max_new_tokens": 32, "stop": ["\n"]}
    assert cls.labels == {"2": " system call", "3": " library function"}  # YAML int keys become strings
    assert cls.examples["test"][0] == {"id": "c1", "text": "read, write", "label": "2"}  # from CSV
    assert load_suite(good_suite / "suite.yaml").fingerprint == suite.fingerprint


def test_fingerprint_changes_when_a_data_file_changes(good_suite):
    before = load_suite(good_suite)
    (good_suite / "cls.csv").write_text('id,text,label\nc1,"read, write",2\nc2,printf,2\n')
    after = load_suite(good_suite)
    assert after.fingerprint != before.fingerprint
    assert after.tasks[0].fingerprint == before.tasks[0].fingerprint  # the qa task did not change
    assert after.tasks[1].fingerprint != before.tasks[1].fingerprint


def test_settings_problems_name_their_yaml_line(tmp_path):
    write_jsonl(tmp_path / "t.jsonl", [{"id": "1", "text": "x", "label": "a"}])
    (tmp_path / "suite.yaml").write_text(textwrap.dedent("""\
        name: s
        tasks:
          - name: c
            type: classification
            data: {test: t.jsonl}
            labels: {a: " A"}
            num_fewshot: 2
            generation: {max_new_tokens: 5}
            metrics: [accuracy, bleu]
            colour: blue
        """))
    with pytest.raises(DomainbenchError) as caught:
        load_suite(tmp_path)
    message = str(caught.value)
    for expected in ["suite.yaml:10: c.colour: unknown field",
                     "suite.yaml:9: c.metrics: 'bleu' is not a classification metric",
                     "suite.yaml:8: c.generation: a classification task is scored by log-likelihood",
                     "suite.yaml:7: c.num_fewshot: few-shot exemplars come from the train split"]:
        assert expected in message, message


def test_unknown_suite_names_the_builtins():
    with pytest.raises(DomainbenchError, match="tiny"):
        load_suite("no-such-suite")


def test_builtin_tiny_suite_is_valid_and_covers_every_task_type(capsys):
    assert "tiny" in builtin_suites()
    suite = load_suite("tiny")
    assert {task.type for task in suite.tasks} == {"qa", "ner", "classification", "summarization", "perplexity"}
    main(["suite", "validate", "tiny"])
    assert capsys.readouterr().out.startswith("ok: suite tiny: 5 tasks")


def test_show_prints_effective_settings(capsys):
    main(["suite", "show", "tiny", "--json"])
    shown = json.loads(capsys.readouterr().out)
    assert shown["tasks"]["manpage-perplexity"]["template"] == "{text}"
    assert shown["tasks"]["errno-qa"]["splits"] == {"train": 3, "test": 4}


def test_gzipped_jsonl_loads_and_its_bad_lines_are_located(tmp_path):
    import gzip

    with gzip.open(tmp_path / "t.jsonl.gz", "wt") as handle:
        handle.write('{"id": "1", "text": "some held-out text"}\n\n{"id": "2", "text": ""}\n')
    (tmp_path / "suite.yaml").write_text("name: g\ntasks:\n  - {name: p, type: perplexity, data: {test: t.jsonl.gz}}\n")
    with pytest.raises(DomainbenchError) as caught:
        load_suite(tmp_path)
    assert "t.jsonl.gz:3: text: expected a non-empty string" in str(caught.value)


def latin1_and_gzip_files(root):
    """Data files a user's tools write by mistake: Latin-1 text, and gzip bytes behind a .jsonl name."""
    import gzip

    rows = [{"id": "1", "text": "first"}, {"id": "2", "text": "café résumé"}]
    (root / "latin1.jsonl").write_bytes("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("latin-1"))
    (root / "latin1.csv").write_bytes("id,text\n1,first\n2,naïve\n".encode("latin-1"))
    (root / "packed.jsonl").write_bytes(gzip.compress(b'{"id": "1", "text": "first"}\n'))
    (root / "plain.jsonl.gz").write_text('{"id": "1", "text": "not compressed"}\n')
    return {"latin1.jsonl": "latin1.jsonl:2: encoding: not UTF-8 text (byte 0xe9)",
            "latin1.csv": "latin1.csv:3: encoding: not UTF-8 text (byte 0xef)",
            "packed.jsonl": "packed.jsonl:1: encoding: holds gzip-compressed bytes",
            "plain.jsonl.gz": "plain.jsonl.gz:1: gzip: not a readable gzip file"}


@pytest.mark.parametrize("data_file", ["latin1.jsonl", "latin1.csv", "packed.jsonl", "plain.jsonl.gz"])
def test_a_data_file_that_is_not_utf8_text_is_one_problem_naming_its_line(tmp_path, capsys, data_file):
    expected = latin1_and_gzip_files(tmp_path)[data_file]
    (tmp_path / "suite.yaml").write_text(f"name: s\ntasks:\n  - {{name: p, type: perplexity, data: {{test: {data_file}}}}}\n")
    with pytest.raises(SystemExit) as exited:
        main(["suite", "validate", str(tmp_path)])
    assert exited.value.code == 2
    problems = capsys.readouterr().err.splitlines()[1:]  # under the "1 problem(s) in suite …" header
    assert len(problems) == 1 and expected in problems[0], problems


def test_a_suite_yaml_that_is_not_utf8_is_named(tmp_path, capsys):
    (tmp_path / "suite.yaml").write_bytes("name: café\ntasks: []\n".encode("latin-1"))
    with pytest.raises(SystemExit) as exited:
        main(["suite", "validate", str(tmp_path)])
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: {tmp_path / 'suite.yaml'}:1: encoding: not UTF-8 text (byte 0xe9); save the file as UTF-8"]
