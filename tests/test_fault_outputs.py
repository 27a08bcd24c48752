"""Where commands write: never over the user's files, never outside the run folder, and one line when they cannot.

Each case is an entry of the fault catalogue (issue 29): the exit code, the one line, and that
nothing of the user's is lost.
"""

from __future__ import annotations

import errno
import os

import pytest
from test_runner import write_run_suite

from cli.main import main
from harness.manifest import MANIFEST_FILE


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DOMAINBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def nothing_may_be_built(monkeypatch):
    """A refused command must stop before training, indexing or evaluating anything."""
    import retrieval.index
    import run.runner
    import tuning.strategies

    def built(*args, **kwargs):
        raise AssertionError("work started before the command was checked")

    monkeypatch.setattr(tuning.strategies, "tune", built)
    monkeypatch.setattr(retrieval.index, "build_index", built)
    monkeypatch.setattr(run.runner, "evaluate_task", built)


def refused(capsys, *args: str) -> str:
    """Run the CLI; assert exit 2 with a one-line error; return that line."""
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    err = capsys.readouterr().err
    assert exited.value.code == 2, err
    lines = err[err.index("error: "):].splitlines()
    assert len(lines) == 1, err
    return lines[0]


def users_folder(path):
    """A folder of the user's own files (what `--out` must not swallow)."""
    (path / "sub").mkdir(parents=True)
    (path / "thesis.txt").write_text("four years of work")
    (path / "sub" / "notes.md").write_text("notes")
    return path


def assert_untouched(path):
    assert (path / "thesis.txt").read_text() == "four years of work"
    assert (path / "sub" / "notes.md").read_text() == "notes"


# ----- 1. never delete the user's files --------------------------------------------------------------

@pytest.fixture
def corpus(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.txt").write_text("open(2) opens a file")
    return tmp_path / "docs"


@pytest.mark.usefixtures("nothing_may_be_built")
def test_index_build_refuses_to_replace_a_folder_of_the_users_files(tmp_path, capsys, corpus):
    out = users_folder(tmp_path / "mine")
    line = refused(capsys, "index", "build", "--corpus", str(corpus), "--out", str(out))
    assert f"--out {out}: already exists" in line and "--force" in line
    assert_untouched(out)


@pytest.mark.usefixtures("nothing_may_be_built")
def test_index_build_refuses_to_replace_a_file(tmp_path, capsys, corpus):
    out = tmp_path / "thesis.txt"
    out.write_text("four years of work")
    line = refused(capsys, "index", "build", "--corpus", str(corpus), "--out", str(out))
    assert "is a file, not a domainbench artifact" in line
    assert out.read_text() == "four years of work"


@pytest.mark.usefixtures("nothing_may_be_built")
def test_tune_refuses_to_replace_a_folder_of_the_users_files(tmp_path, capsys):
    out = users_folder(tmp_path / "mine")
    line = refused(capsys, "tune", "lora", "--model", "tiny-random-llama", "--suite", "tiny", "--output", str(out))
    assert f"--output {out}: already exists and is a directory of other files" in line
    assert_untouched(out)


def test_an_artifact_of_ours_or_an_empty_folder_may_be_replaced(tmp_path):
    from harness.manifest import check_replaceable

    (tmp_path / "empty").mkdir()
    (tmp_path / "ours").mkdir()
    (tmp_path / "ours" / MANIFEST_FILE).write_text("{}")
    for path in (tmp_path / "empty", tmp_path / "ours", tmp_path / "absent", users_folder(tmp_path / "mine")):
        check_replaceable(path, force=path.name == "mine", option="--out")


# ----- 2. nothing written outside the run folder, nothing written by a refused run --------------------

@pytest.mark.usefixtures("nothing_may_be_built")
@pytest.mark.parametrize("name", ["..", ".", "a/b", ""])
def test_a_run_name_must_be_a_plain_directory_name(tmp_path, capsys, name):
    parent = tmp_path / "A"
    line = refused(capsys, "run", "--suite", "tiny", "--model", "tiny-random-llama", "--configurations", "base",
                   "--output", str(parent / "sub"), "--name", name)
    assert f"name: {name!r} must be a plain directory name" in line
    assert not parent.exists()


@pytest.mark.usefixtures("nothing_may_be_built")
@pytest.mark.parametrize("flags, expected", [
    (["--num-fewshot", "-3"], "num_fewshot: expected 0 or more, got -3"),
    (["--model", "./no/such/model"], "model ./no/such/model: no such file or directory"),
])
def test_a_refused_run_leaves_no_run_folder(tmp_path, capsys, flags, expected):
    args = ["run", "--suite", "tiny", "--model", "tiny-random-llama", "--configurations", "base",
            "--output", str(tmp_path / "runs"), "--name", "r", *flags]
    assert expected in refused(capsys, *args)
    assert not (tmp_path / "runs").exists()


def test_a_run_name_reused_with_another_suite_is_refused_before_anything_is_written(tmp_path, capsys):
    runs = tmp_path / "runs"
    common = ["--model", "tiny-random-llama", "--configurations", "base", "--tasks", "perplexity",
              "--limit", "2", "--output", str(runs), "--name", "r", "--device", "cpu"]
    main(["run", "--suite", str(write_run_suite(tmp_path / "first")), *common])
    result = runs / "r" / "results" / "base" / "perplexity.json"
    before = result.read_bytes()
    other = write_run_suite(tmp_path / "other")  # the same task names, under another suite name
    (other / "suite.yaml").write_text((other / "suite.yaml").read_text().replace("name: runsuite", "name: other"))
    line = refused(capsys, "run", "--suite", str(other), *common)
    assert f"run dir {runs / 'r'}: holds a run of suite 'runsuite', not 'other'" in line
    assert result.read_bytes() == before
    main(["report", str(runs / "r")])  # the old run still renders


# ----- 3. output paths the OS refuses -------------------------------------------------------------------

@pytest.mark.usefixtures("nothing_may_be_built")
def test_a_run_dir_that_is_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "r").write_text("not a directory")
    line = refused(capsys, "run", "--suite", "tiny", "--model", "tiny-random-llama", "--configurations", "base",
                   "--output", str(tmp_path / "runs"), "--name", "r")
    assert f"run dir {tmp_path / 'runs' / 'r'}: cannot write here: {tmp_path / 'runs' / 'r'} is a file" in line


@pytest.mark.usefixtures("nothing_may_be_built")
def test_a_run_output_that_is_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "runs").write_text("not a directory")
    line = refused(capsys, "run", "--suite", "tiny", "--model", "tiny-random-llama", "--configurations", "base",
                   "--output", str(tmp_path / "runs"), "--name", "r")
    assert f"cannot write here: {tmp_path / 'runs'} is a file, not a directory" in line


@pytest.mark.usefixtures("nothing_may_be_built")
def test_index_build_into_a_path_under_a_file_is_one_line(tmp_path, capsys, corpus):
    (tmp_path / "file").write_text("x")
    line = refused(capsys, "index", "build", "--corpus", str(corpus), "--out", str(tmp_path / "file" / "index"))
    assert f"cannot write here: {tmp_path / 'file'} is a file, not a directory" in line


def test_eval_into_an_output_that_is_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "out").write_text("x")
    line = refused(capsys, "eval", "--model", "tiny-random-llama", "--suite", "tiny", "--tasks", "manpage-perplexity",
                   "--limit", "1", "--device", "cpu", "--output", str(tmp_path / "out"))
    assert "cannot write here" in line and str(tmp_path / "out") in line
    assert (tmp_path / "out").read_text() == "x"


def test_eval_into_a_directory_the_os_refuses_is_one_line(tmp_path, capsys, monkeypatch):
    """What a read-only directory does for a user who is not root (tests here may run as root)."""
    import tempfile

    out, mkstemp = tmp_path / "out", tempfile.mkstemp

    def refuse_in_out(*args, dir=None, **kwargs):
        if dir is not None and str(dir).startswith(str(out)):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), dir)
        return mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", refuse_in_out)
    line = refused(capsys, "eval", "--model", "tiny-random-llama", "--suite", "tiny", "--tasks", "manpage-perplexity",
                   "--limit", "1", "--device", "cpu", "--output", str(out))
    assert line.startswith(f"error: {out}") and "cannot write here: Permission denied" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
@pytest.mark.usefixtures("nothing_may_be_built")
def test_a_read_only_output_directory_is_one_line(tmp_path, capsys):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs").chmod(0o555)
    try:
        line = refused(capsys, "run", "--suite", "tiny", "--model", "tiny-random-llama", "--configurations", "base",
                       "--output", str(tmp_path / "runs"), "--name", "r")
    finally:
        (tmp_path / "runs").chmod(0o755)
    assert "is not writable by this user" in line
