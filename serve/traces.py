"""Traces of what `domainbench serve` answered, and what users said of it, in one embedded SQLite store.

    store = TraceStore(Path("traces.sqlite"), keep_text=True)
    store.record(trace)                                   # each answered request
    store.add_feedback("chatcmpl-…", "down", correction="EACCES")

A trace is one answered request: its id (the response's own `id`), when, the configuration's
fingerprint, latency, tokens and finish reason; the prompt and answer text only when the server
keeps text (`serve --trace-text`), scrubbed of e-mail addresses and phone numbers unless told not
to (the scrubber `suite new --scrub-pii` uses). Feedback is one rating per answer ("up" or "down";
a second rating replaces the first), with an optional correction and comment, scrubbed alike.

Durability: WAL journal with synchronous=NORMAL — a commit survives the process being killed (only
a power cut can lose the last few), and readers (`monitor`, `suite add-from-feedback`) never block
the server. One connection, behind a lock, does every write, so writes never contend; each commits
before the answer or the feedback's acknowledgement is sent. The store keeps the newest
`max_traces` traces: every PRUNE_EVERY records the oldest beyond it go, their feedback with them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from harness.errors import DomainbenchError
from tasks.documents.clean import scrub_pii
from tasks.feedback import CorrectedAnswer

RATINGS = ("up", "down")  # the satisfied rating first
DEFAULT_MAX_TRACES = 200_000
PRUNE_EVERY = 1000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS traces (
    seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, created REAL NOT NULL, route TEXT NOT NULL, model TEXT,
    configuration_fingerprint TEXT, latency_seconds REAL, prompt_tokens INTEGER, completion_tokens INTEGER,
    finish_reason TEXT, streamed INTEGER, prompt TEXT, answer TEXT);
CREATE TABLE IF NOT EXISTS feedback (
    trace_id TEXT PRIMARY KEY REFERENCES traces(id) ON DELETE CASCADE, rated_at REAL NOT NULL,
    rating TEXT NOT NULL, correction TEXT, comment TEXT);
CREATE INDEX IF NOT EXISTS feedback_by_time ON feedback(rated_at);
"""


@dataclass(frozen=True)
class Trace:
    """One answered request. `prompt` is what the client sent (a chat's messages, or the completion prompts);
    `answers` one text per choice; both are dropped unless the store keeps text."""

    id: str
    route: str
    model: str
    configuration_fingerprint: str | None
    latency_seconds: float
    prompt_tokens: int
    completion_tokens: int
    finish_reasons: list[str]
    streamed: bool
    prompt: list | str | None = None
    answers: list[str] | None = None


class UnknownTrace(Exception):
    """Feedback names an id the store holds no trace of."""


def configuration_fingerprint(about: dict) -> str | None:
    """One fingerprint of what is served: the sha256 of every artifact fingerprint `/v1/models` shows."""
    parts = {key: value for key, value in sorted(about.items()) if key.endswith("fingerprint") and value}
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest() if parts else None


class TraceStore:
    """The server's writer: one SQLite connection, one lock; every write committed before it returns."""

    def __init__(self, path: Path, *, keep_text: bool = False, scrub: bool = True,
                 max_traces: int = DEFAULT_MAX_TRACES):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
        except sqlite3.Error as exc:
            raise DomainbenchError(f"--traces {path}: cannot open it as a SQLite store ({exc})") from None
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)
        self.path, self.keep_text, self.scrub, self.max_traces = path, keep_text, scrub, max_traces
        self._lock = threading.Lock()
        self._since_prune = 0

    def _text(self, text: str | None) -> str | None:
        return scrub_pii(text)[0] if text is not None and self.scrub else text

    def _scrubbed(self, value):
        """A client's prompt (a string, messages, lists of them) with every string scrubbed."""
        if isinstance(value, str):
            return self._text(value)
        if isinstance(value, list):
            return [self._scrubbed(item) for item in value]
        if isinstance(value, dict):
            return {key: self._scrubbed(item) for key, item in value.items()}
        return value

    def record(self, trace: Trace) -> None:
        """Store one answered request (its text only when the store keeps text)."""
        prompt = json.dumps(self._scrubbed(trace.prompt)) if self.keep_text and trace.prompt is not None else None
        answer = json.dumps(self._scrubbed(trace.answers)) if self.keep_text and trace.answers is not None else None
        row = (trace.id, time.time(), trace.route, trace.model, trace.configuration_fingerprint, trace.latency_seconds,
               trace.prompt_tokens, trace.completion_tokens, ",".join(trace.finish_reasons), int(trace.streamed),
               prompt, answer)
        with self._lock:
            self._db.execute("INSERT INTO traces (id, created, route, model, configuration_fingerprint, latency_seconds,"
                             " prompt_tokens, completion_tokens, finish_reason, streamed, prompt, answer)"
                             " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
            self._since_prune += 1
            if self._since_prune >= PRUNE_EVERY:
                self._since_prune = 0
                self._db.execute("DELETE FROM traces WHERE seq <= (SELECT max(seq) FROM traces) - ?",
                                 (self.max_traces,))

    def add_feedback(self, trace_id: str, rating: str, *, correction: str | None = None,
                     comment: str | None = None) -> float:
        """Store (or replace) the rating of one answer, committed when this returns; when it was rated.

        Raises UnknownTrace when no trace has that id.
        """
        rated_at = time.time()
        with self._lock:
            try:
                self._db.execute(
                    "INSERT INTO feedback (trace_id, rated_at, rating, correction, comment) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT(trace_id) DO UPDATE SET rated_at = excluded.rated_at, rating = excluded.rating, "
                    "correction = excluded.correction, comment = excluded.comment",
                    (trace_id, rated_at, rating, self._text(correction), self._text(comment)))
            except sqlite3.IntegrityError:  # the foreign key: no such trace
                raise UnknownTrace(trace_id) from None
        return rated_at

    def close(self) -> None:
        with self._lock:
            self._db.close()


# ----- readers: `monitor` and `suite add-from-feedback`, while the server writes ------------------

@contextlib.contextmanager
def _reading(path: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection to a store that must exist (a missing file is one line, not an empty store)."""
    path = Path(path)
    if not path.is_file():
        raise DomainbenchError(f"traces {path}: no such store (serve writes it with --traces PATH)")
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        db.execute("SELECT 1 FROM feedback LIMIT 1")
    except sqlite3.DatabaseError as exc:
        db.close()
        raise DomainbenchError(f"traces {path}: not a trace store ({exc})") from None
    try:
        yield db
    finally:
        db.close()


def ratings_between(path: Path, since: float, until: float, *, served: str | None = None) -> tuple[int, int]:
    """(satisfied, rated): answers whose latest rating was given in (since, until]; with `served` (a
    configuration fingerprint) only the answers that configuration gave: a rating given after a
    redeploy to an answer of the model before it is not the new model's."""
    query = ("SELECT coalesce(sum(f.rating = ?), 0), count(*) FROM feedback f JOIN traces t ON t.id = f.trace_id "
             "WHERE f.rated_at > ? AND f.rated_at <= ?")
    arguments = [RATINGS[0], since, until]
    if served is not None:
        query += " AND t.configuration_fingerprint = ?"
        arguments.append(served)
    with _reading(path) as db:
        up, rated = db.execute(query, arguments).fetchone()
    return int(up), int(rated)


def corrected_answers(path: Path) -> tuple[list[CorrectedAnswer], int]:
    """Answers rated "down" with a correction, oldest first, and how many of them lack the prompt text
    (served without --trace-text, or a completions request of several prompts)."""
    with _reading(path) as db:
        rows = db.execute("SELECT t.id, f.rated_at, t.configuration_fingerprint, t.route, t.prompt, t.answer, "
                          "f.correction, f.comment FROM feedback f JOIN traces t ON t.id = f.trace_id "
                          "WHERE f.rating = ? AND coalesce(f.correction, '') != '' ORDER BY f.rated_at",
                          (RATINGS[1],)).fetchall()
    answers, without_text = [], 0
    for trace_id, rated_at, fingerprint, route, prompt, answer, correction, comment in rows:
        question = _user_text(route, json.loads(prompt)) if prompt else None
        if question is None:
            without_text += 1
            continue
        answers.append(CorrectedAnswer(trace_id=trace_id, rated_at=rated_at, prompt=question,
                                       answer=(json.loads(answer) or [""])[0] if answer else "",
                                       correction=correction, comment=comment or "",
                                       configuration_fingerprint=fingerprint))
    return answers, without_text


def _user_text(route: str, prompt) -> str | None:
    """What the user asked: a chat's last user message, or a completion's one prompt (None for several)."""
    if route == "chat_completions":
        users = [m.get("content") for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
        return users[-1] if users and isinstance(users[-1], str) else None
    prompts = [prompt] if isinstance(prompt, str) else prompt
    return prompts[0] if len(prompts) == 1 and isinstance(prompts[0], str) else None
