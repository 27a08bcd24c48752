"""The man-pages builder's markup reading, on small roff snippets (no man pages needed)."""

from __future__ import annotations

import gzip
import io
from collections import Counter

from tasks.manpages.build import capped, write_jsonl_gz
from tasks.manpages.entities import sentences
from tasks.manpages.pages import page_split
from tasks.manpages.roff import (
    BOLD,
    ROMAN,
    Run,
    decode_runs,
    macro_args,
    paragraphs,
    raw_sections,
)
from tasks.manpages.structure import error_entries, name_line, synopsis_headers

PAGE = r""".\" SPDX-License-Identifier: Linux-man-pages-copyleft
.TH demo 2 2023-02-05 "Linux man-pages 6.03"
.SH NAME
demo, demoat \- do a demo with a file
.SH SYNOPSIS
.nf
.B #include <unistd.h>
.PP
.BI "int demo(const char *" path );
.PP
.BR "#include <fcntl.h>" "     /* Definition of " AT_* " constants */"
.B #include <sys/types.h>
.B #include <sys/stat.h>
.PP
.BI "int demoat(int " dirfd ", const char *" path );
.fi
.SH DESCRIPTION
.BR demo ()
opens
.I path
with
.B O_CREAT
as in
.BR open (2).
It reads
.I /etc/demo.conf
and fills a
.IR "struct stat" .
.PP
If the call fails, it sets
.I errno
to
.BR EINVAL ;
see
.I <errno.h>
for \fBEINTR\fP and friends.
.SH ERRORS
.BR demo ()
can fail with:
.TP
.B EACCES
Search permission is denied on a component of the path.
.TP
.BR EAGAIN " or " EWOULDBLOCK
The file was marked nonblocking and no data was ready.
.TP
.B EPERM
The caller lacks the privilege to demo this file.
.TP
.B EACCES
The caller lacks the privilege to demo this file.
"""


def test_escapes_and_font_changes_become_runs():
    runs = decode_runs(r"a \fBbold\fP \(lqq\(rq \-1 \e x\~y\&.")
    assert runs == [Run("a ", ROMAN), Run("bold", BOLD), Run(' "q" -1 \\ x y.', ROMAN)]


def test_macro_arguments_follow_roff_quoting():
    assert macro_args('.BR "#include <fcntl.h>" "  /* a ""b"" */"') == ["#include <fcntl.h>", '  /* a "b" */']


def test_name_line_gives_names_and_description():
    assert name_line(raw_sections(PAGE)["NAME"]) == (["demo", "demoat"], "do a demo with a file")


def test_entities_come_from_fonts_and_offsets_cut_the_span():
    found = []
    for paragraph in paragraphs(raw_sections(PAGE)["DESCRIPTION"]):
        for text, entities in sentences(paragraph):
            found.extend((e["type"], text[e["start"]:e["end"]]) for e in entities)
    assert found == [
        ("FUNCTION", "demo"), ("CONSTANT", "O_CREAT"), ("FUNCTION", "open"),
        ("PATH", "/etc/demo.conf"), ("TYPE", "struct stat"),
        ("ERRNO", "EINVAL"), ("HEADER", "<errno.h>"), ("ERRNO", "EINTR"),
    ]


def test_sentences_end_where_a_source_line_ends_with_a_full_stop():
    paragraph = paragraphs(raw_sections(PAGE)["DESCRIPTION"])[0]
    assert [text for text, _ in sentences(paragraph)] == [
        "demo() opens path with O_CREAT as in open(2).",
        "It reads /etc/demo.conf and fills a struct stat.",
    ]


def test_error_entries_pair_tags_with_conditions():
    entries = error_entries(raw_sections(PAGE)["ERRORS"])
    assert [entry.errnos for entry in entries] == [("EACCES",), ("EAGAIN", "EWOULDBLOCK"), ("EPERM",), ("EACCES",)]
    assert entries[0].condition == "Search permission is denied on a component of the path."


def test_synopsis_headers_skip_commented_includes_and_reset_per_group():
    declared = synopsis_headers(raw_sections(PAGE)["SYNOPSIS"])
    assert declared == {"demo": ["<unistd.h>"], "demoat": ["<sys/types.h>", "<sys/stat.h>"]}


def test_page_split_is_a_fixed_function_of_the_page_id():
    ids = [f"page{i}.3" for i in range(2000)]
    counts = Counter(page_split(page_id) for page_id in ids)
    assert [page_split(page_id) for page_id in ids] == [page_split(page_id) for page_id in ids]
    assert abs(counts["train"] / 2000 - 0.7) < 0.04 and abs(counts["test"] / 2000 - 0.2) < 0.04


def test_capping_keeps_order_and_does_not_depend_on_other_records():
    records = [{"id": f"r{i}"} for i in range(50)]
    kept = capped(records, 10)
    assert len(kept) == 10 and kept == sorted(kept, key=lambda r: int(r["id"][1:]))
    assert capped(list(reversed(records)), 10) == list(reversed(kept))


def test_gzip_bytes_depend_only_on_the_records(tmp_path):
    records = [{"id": "a", "text": "é"}, {"id": "b", "text": "x"}]
    write_jsonl_gz(tmp_path / "one.jsonl.gz", records)
    write_jsonl_gz(tmp_path / "other-name.jsonl.gz", records)
    assert (tmp_path / "one.jsonl.gz").read_bytes() == (tmp_path / "other-name.jsonl.gz").read_bytes()
    lines = gzip.GzipFile(fileobj=io.BytesIO((tmp_path / "one.jsonl.gz").read_bytes())).read().decode()
    assert lines == '{"id":"a","text":"é"}\n{"id":"b","text":"x"}\n'


def test_errno_questions_skip_conditions_listed_under_several_errnos():
    from tasks.manpages.pages import Page
    from tasks.manpages.questions import errno_qa_examples

    markup = raw_sections(PAGE)
    page = Page(id="demo.2", section="2", split="test", names=["demo", "demoat"], description="do a demo",
                text="", rendered={}, markup=markup)
    questions = {example["id"]: example for example in errno_qa_examples(page)}
    assert [q["answers"] for q in questions.values()] == [["EACCES"], ["EAGAIN", "EWOULDBLOCK"], ["<unistd.h>"]]
    assert questions["demo.2#errno0"]["question"] == (
        "Which error does demo() return when this happens: Search permission is denied on a component of the path.")
    assert questions["demo.2#errno0"]["source"] == {"doc_id": "demo.2", "section": "ERRORS"}
