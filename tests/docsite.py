"""A small mdBook-like documentation site, written into a folder for tests and benchmarks.

What real generated sites have and `suite new` must cope with: every page carries the sidebar,
the menu bar and a keyboard-help overlay; code examples hide mdBook's "boring" lines
(`#![allow(unused)]`, `fn main() {`) in spans; code-heavy chapters repeat lines (`}`) far more
than prose does; old URLs are redirect stubs (a meta refresh, or "This is an old link" text); and
an error-code index has one page per code whose first sentence says what the code means.

`write_docsite(root)` writes `root/site/{book,reference,error_codes,redirects}/…` and returns
the site folder and what a test needs to know about it (`Site`).
"""

from __future__ import annotations

import html
import random
from dataclasses import dataclass, field
from pathlib import Path

BOOK_NAME = "The Frobnicator Book"
HELP_OVERLAY = ["Press ← or → to navigate between chapters", "Press S or / to search in the book",
                "Press ? to show this help", "Press Esc to hide this help"]
OLD_LINK_TEXT = ("This is an old link to a page that has moved. The first edition of the book is no longer "
                 "distributed with the toolchain documentation. If you came here via a link or web search, you may "
                 "want to check out the current version of the book instead, which covers the same topics with newer "
                 "examples and explains every feature of the language in more depth.")
RETIRED_SENTENCE = "This error code is no longer emitted by the compiler."
HIDDEN_LINES = ("#![allow(unused)]", "fn main() {")

_TOPICS = ["ownership", "borrowing", "lifetimes", "closures", "iterators", "traits", "generics", "modules",
           "macros", "channels", "threads", "slices", "vectors", "strings", "patterns", "enums"]
_SUBJECTS = ["The compiler", "A borrow checker", "The frobnicator runtime", "Each crate", "The linker", "A trait object",
             "The type checker", "Every closure", "The allocator", "A worker thread", "The macro expander",
             "Our build script", "The package manager", "A test harness", "The code generator", "Every iterator",
             "The scheduler", "A smart pointer", "The resolver", "Each module"]
_VERBS = ["rejects", "moves", "copies", "drops", "inspects", "rewrites", "schedules", "verifies", "inlines", "caches",
          "borrows", "clones", "formats", "parses", "expands", "locks", "spawns", "joins", "hashes", "sorts"]
_OBJECTS = ["a mutable reference", "the owned value", "each generic parameter", "the shared slice", "every heap buffer",
            "the iterator adapter", "a boxed closure", "the module path", "an enum variant", "the lifetime bound",
            "a raw pointer", "the trait method", "each struct field", "the match guard", "a string literal",
            "the vector capacity", "an atomic counter", "the channel sender", "a thread handle", "the default impl"]
_WHEN = ["before returning", "when scopes end", "while looping", "after moving", "once borrowing ends",
         "during monomorphization", "at link time", "inside match arms", "whenever panics unwind", "after unlocking",
         "before tests start", "after parsing", "on every rebuild", "during expansion", "in release builds",
         "in debug builds", "under contention", "across threads"]
_LINKS = ["and then", "so that it", "unless it", "whereas the runtime", "because nothing else", "although it rarely"]


@dataclass(frozen=True)
class ErrorPage:
    code: str
    first_sentence: str
    doc_id: str          # as `suite new --docs <site>` names it


@dataclass
class Site:
    root: Path
    errors: list[ErrorPage] = field(default_factory=list)
    code_heavy: list[str] = field(default_factory=list)   # doc ids of chapters mostly made of code
    stubs: list[str] = field(default_factory=list)        # doc ids of redirect and old-link pages
    retired: list[str] = field(default_factory=list)      # doc ids of error pages holding RETIRED_SENTENCE


def write_docsite(root: Path, *, seed: int = 3) -> Site:
    rng = random.Random(seed)
    site = Site(root / "site")
    chapters = [f"ch{number:02d}-{topic}" for number, topic in enumerate(_TOPICS[:12], start=1)]
    for number, name in enumerate(chapters):
        heavy = number % 3 == 0
        body = _chapter_body(rng, name.split("-", 1)[1], heavy)
        _write_page(site.root / "book" / f"{name}.html", _heading(name), body, chapters)
        if heavy:
            site.code_heavy.append(f"site/book/{name}.html")
    for topic in _TOPICS[12:]:
        _write_page(site.root / "reference" / f"{topic}.html", f"Reference: {topic}",
                    _chapter_body(rng, topic, heavy=False), chapters)
    for number in range(1, 21):
        site.errors.append(_write_error_page(site, rng, number, chapters))
    index = "".join(f"<li><a href='{e.code}.html'>{e.code}</a>: {html.escape(e.first_sentence)}</li>"
                    for e in site.errors)
    _write_page(site.root / "error_codes" / "index.html", "Error codes index",
                f"<p>{_sentence(rng)} {_sentence(rng)}</p><ul>{index}</ul>", chapters)
    _write_stubs(site, chapters)
    return site


def error_question(page: ErrorPage) -> str:
    return f"What does error {page.code} mean?"


def _chapter_body(rng: random.Random, topic: str, heavy: bool) -> str:
    paragraphs = [f"<p>{' '.join(_sentence(rng, topic) for _ in range(3))}</p>" for _ in range(3 if heavy else 5)]
    blocks = [_code_block(rng, lines=14 if heavy else 5) for _ in range(5 if heavy else 1)]
    parts = []
    for number, paragraph in enumerate(paragraphs):
        parts.append(paragraph)
        if number < len(blocks):
            parts.append(blocks[number])
    parts.extend(blocks[len(paragraphs):])
    return "\n".join(parts)


def _write_error_page(site: Site, rng: random.Random, number: int, chapters: list[str]) -> ErrorPage:
    code = f"E{number:04d}"
    first = (f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} {rng.choice(_WHEN)} "
             f"because {rng.choice(_OBJECTS)} {rng.choice(['outlives', 'aliases', 'shadows', 'overflows'])} "
             f"{rng.choice(_OBJECTS)}.")
    retired = number % 4 == 0
    body = (f"<p>{html.escape(first)}</p>" + (f"<p>{RETIRED_SENTENCE}</p>" if retired else "")
            + "<p>Erroneous code example:</p>" + _code_block(rng, lines=4, error=code)
            + f"<p>{_sentence(rng)} {_sentence(rng)} {_sentence(rng)}</p>"
            + "<p>Fixed example:</p>" + _code_block(rng, lines=4)
            + f"<p>{_sentence(rng)} {_sentence(rng)}</p>")
    _write_page(site.root / "error_codes" / f"{code}.html", code, body, chapters)
    doc_id = f"site/error_codes/{code}.html"
    if retired:
        site.retired.append(doc_id)
    return ErrorPage(code, first, doc_id)


def _write_stubs(site: Site, chapters: list[str]) -> None:
    for name in chapters[:3]:
        path = site.root / "redirects" / f"{name}.html"
        path.parent.mkdir(parents=True, exist_ok=True)
        target = f"../book/{name}.html"
        path.write_text(f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Redirecting...</title>"
                        f"<meta http-equiv='refresh' content='0; URL={target}'>"
                        f"<link rel='canonical' href='{target}'></head><body><p>Redirecting to "
                        f"<a href='{target}'>{target}</a>...</p></body></html>", encoding="utf-8")
        site.stubs.append(f"site/redirects/{name}.html")
    for name in chapters[3:5]:
        _write_page(site.root / "first-edition" / f"{name}.html", _heading(name),
                    f"<p>{OLD_LINK_TEXT}</p><p>You can find the new page at <a href='../book/{name}.html'>"
                    f"{_heading(name)}</a>.</p>", chapters)
        site.stubs.append(f"site/first-edition/{name}.html")


def _sentence(rng: random.Random, topic: str | None = None) -> str:
    """A sentence whose every slot is drawn, so no word 5-gram repeats often (the repetition rules keep it)."""
    about = f" in {topic} code" if topic and rng.random() < 0.3 else ""
    return (f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}{about} {rng.choice(_WHEN)} "
            f"{rng.choice(_LINKS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} {rng.randint(2, 99)} times.")


def _code_block(rng: random.Random, *, lines: int, error: str = "") -> str:
    """A Rust example whose hidden lines sit in `boring` spans, as mdBook renders them."""
    hidden = "".join(f'<span class="boring">{html.escape(line)}\n</span>' for line in HIDDEN_LINES)
    body = []
    for number in range(lines):
        body.append(f"    let value_{number} = compute_{rng.randint(1, 9)}(&amp;input);")
        body.append("    if value_{0} &gt; 0 {{\n        return;\n    }}".format(number))
    if error:
        body.insert(0, f"    // error[{error}]")
    return (f'<pre><code class="language-rust">{hidden}' + "\n".join(body)
            + '\n<span class="boring">}</span></code></pre>')


def _heading(name: str) -> str:
    return name.split("-", 1)[1].replace("-", " ").capitalize()


def _write_page(path: Path, heading: str, body: str, chapters: list[str]) -> None:
    """One page as mdBook lays it out: sidebar, menu bar, content, previous/next links, help overlay."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sidebar = "".join(f"<li class='chapter-item'><a href='../book/{c}.html'>{_heading(c)}</a></li>" for c in chapters)
    overlay = "".join(f"<p>{html.escape(line)}</p>" for line in HELP_OVERLAY)
    path.write_text(
        f"<!DOCTYPE HTML><html lang='en'><head><meta charset='UTF-8'><title>{html.escape(heading)} - {BOOK_NAME}"
        f"</title></head><body><div id='body-container'>"
        f"<nav id='sidebar' class='sidebar'><div class='sidebar-scrollbox'><ol class='chapter'>{sidebar}</ol></div></nav>"
        f"<div id='page-wrapper' class='page-wrapper'><div class='page'><div id='menu-bar' class='menu-bar'>"
        f"<h1 class='menu-title'>{BOOK_NAME}</h1></div><div id='content' class='content'><main>"
        f"<h1 id='top'><a class='header' href='#top'>{html.escape(heading)}</a></h1>\n{body}\n"
        f"<div class='shortcuts'><h2>Keyboard shortcuts</h2>{overlay}</div></main>"
        f"<nav class='nav-wrapper'><a rel='prev' href='#'>Previous chapter</a> <a rel='next' href='#'>Next chapter</a></nav>"
        f"</div></div></div></div></body></html>", encoding="utf-8")
