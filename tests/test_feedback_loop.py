"""The loop from production back to the release gate, end to end on the tiny model served by `domainbench serve`:
users ask and rate (good and bad, with corrections), a monitor round reports their satisfaction, the bad answers
become test examples, and `compare` of the next release is gated on exactly those examples."""

from __future__ import annotations

import shutil
import sqlite3

import httpx
import pytest

from cli.main import main
from tasks.suite_files import SUITES_DIR
from tests.servers import start_serve, stop_serve

pytestmark = pytest.mark.slow

# What users asked, and what the right answer was; the tiny random model answers every one wrong.
CORRECTED = {"Which errno means I/O error?": "EIO", "Which errno means no space left on device?": "ENOSPC",
             "Which errno means bad file descriptor?": "EBADF", "Which errno means broken pipe?": "EPIPE",
             "Which errno means too many open files?": "EMFILE", "Which errno means resource busy?": "EBUSY",
             "Which errno means not a directory?": "ENOTDIR", "Which errno means read-only file system?": "EROFS"}
LIKED = ["What does close() do?", "What does dup() do?"]


def _exit_code(argv: list[str]) -> int:
    try:
        main(argv)
    except SystemExit as exc:
        return exc.code
    return 0


def _ask(http: httpx.Client, question: str) -> str:
    """One user's question as a client with the suite's prompt format sends it; the answer's trace id."""
    answer = http.post("/v1/completions", json={"prompt": f"Question: {question}\nAnswer:", "max_tokens": 6,
                                                "stop": ["\n"]})
    assert answer.status_code == 200
    return answer.headers["X-Trace-Id"]


def _release_that_answers_the_corrections(run_dir, out_dir, suite_dir):
    """The served run as a release that learned the users' corrections would score: right on every feedback example."""
    from reports.schema import load_result, result_path, write_result
    from tasks import qa
    from tasks.records import ExampleRecord
    from tasks.suite import load_suite

    shutil.copytree(run_dir, out_dir)
    path = result_path(out_dir, "base", "errno-qa")
    result = load_result(path)
    records = [ExampleRecord.from_dict(example) for example in result.examples]
    records = [qa.score_prediction(r.id, r.reference[0], r.reference) if r.id.startswith("feedback-") else r
               for r in records]
    (task,) = load_suite(suite_dir).select(["errno-qa"])
    result.examples = [record.as_dict() for record in records]
    result.metrics = {name: metric.as_dict() for name, metric in qa.aggregate(task, records).items()}
    result.run = "fixed"
    write_result(path, result)
    return out_dir


def test_ratings_become_satisfaction_then_tests_that_gate_the_next_release(tmp_path, capsys):
    suite = shutil.copytree(SUITES_DIR / "tiny", tmp_path / "suite")
    traces, db = tmp_path / "traces.sqlite", tmp_path / "monitor.sqlite"
    process, url = start_serve(["--model", "tiny-random-llama", "--traces", str(traces), "--trace-text"])
    endpoint = ["--model", f"openai+{url}/v1", "--tokenizer", "tiny-random-llama", "--tasks", "errno-qa",
                "--num-fewshot", "0"]
    try:
        main(["eval", *endpoint, "--suite", str(suite), "--output", str(tmp_path / "approved")])
        with httpx.Client(base_url=url, timeout=60) as http:
            for question, correction in CORRECTED.items():
                rated = http.post("/v1/feedback", json={"id": _ask(http, question), "rating": "down",
                                                        "correction": correction, "comment": "wrong errno"})
                assert rated.status_code == 200
            for question in LIKED:
                assert http.post("/v1/feedback", json={"id": _ask(http, question), "rating": "up"}).status_code == 200
        capsys.readouterr()
        assert _exit_code(["monitor", f"openai+{url}/v1", "--baseline", str(tmp_path / "approved"), "--once",
                           "--sample", "2", "--db", str(db), "--traces", str(traces)]) == 0
        out = capsys.readouterr().out
        assert "satisfaction 20% (2 of 10 rated up), 95% interval 3%–56%" in out and "verdict: pass" in out
        with sqlite3.connect(db) as connection:
            assert connection.execute("SELECT satisfied, rated, dropped FROM satisfaction").fetchall() == [(2, 10, 0)]

        main(["suite", "add-from-feedback", str(traces), "--suite", str(suite), "--task", "errno-qa"])
        assert f"added {len(CORRECTED)} example(s) to errno-qa" in capsys.readouterr().out
        main(["eval", *endpoint, "--suite", str(suite), "--output", str(tmp_path / "candidate")])
    finally:
        stop_serve(process)
    fixed = _release_that_answers_the_corrections(tmp_path / "candidate", tmp_path / "fixed", suite)
    capsys.readouterr()
    assert _exit_code(["compare", str(fixed), str(tmp_path / "candidate"), "--resamples", "300"]) == 1
    out = capsys.readouterr().out
    n = 4 + len(CORRECTED)  # the suite's four test questions and the users' corrected ones
    rows = [line for line in out.splitlines() if line.startswith("| base | errno-qa |")]
    assert len(rows) == 2 and all(f"| {n} ({len(CORRECTED)}) |" in row and "REGRESSION" in row for row in rows)
