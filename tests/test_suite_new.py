"""`domainbench suite new` end to end: a folder of mixed files → a suite that validates, passes the
leakage check and evaluates on tiny-random-llama; bad input exits 2 and writes nothing."""

import gzip
import io
import json
import random
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest

from cli.main import main
from tasks.leakage import check_leakage
from tasks.suite import load_suite

TERMS = ["frobnicator", "kvstore", "zorblax", "quuxd", "blorpfile", "snarfctl", "wibblefs", "gronkify", "plonkdb",
         "fizzlecache"]
_SUBJECTS = ["The", "Each", "Every", "One", "Our", "Their", "This", "That"]
_VERBS = ["reads", "writes", "flushes", "rotates", "locks", "compacts", "mirrors", "indexes", "signs", "moves"]
_ADJECTIVES = ["old", "new", "large", "small", "shared", "private", "remote", "local", "busy", "spare"]
_NOUNS = ["files", "journals", "sockets", "snapshots", "tables", "queues", "volumes", "lines", "keys", "pages"]
_PREPOSITIONS = ["before", "after", "during", "across", "behind", "beside", "within", "without"]
_ADVERBS = ["quickly", "slowly", "daily", "hourly", "safely", "quietly", "rarely", "often"]


MIT_LICENCE = """Permission is hereby granted, free of charge, to any person obtaining a copy of this software
and associated documentation files (the "Software"), to deal in the Software without restriction, including
without limitation the rights to use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies
of the Software, and to permit persons to whom the Software is furnished to do so, subject to the following
conditions: The above copyright notice and this permission notice shall be included in all copies or
substantial portions of the Software.
"""


def prose(rng: random.Random, sentences: int) -> str:
    """English sentences about a made-up tool chain, each holding one of TERMS; every slot is drawn,
    so no word 5-gram repeats by design (the repetition filters keep them)."""
    def pick(words):
        return rng.choice(words)
    lines = [f"{pick(_SUBJECTS)} {pick(TERMS)} {pick(_VERBS)} {pick(_ADJECTIVES)} {pick(_NOUNS)} {pick(_PREPOSITIONS)} "
             f"{pick(_ADJECTIVES)} {pick(_NOUNS)} {pick(_ADVERBS)} and {pick(_VERBS)} {rng.randint(2, 999)} "
             f"{pick(_ADJECTIVES)} {pick(_NOUNS)}." for _ in range(sentences)]
    return " ".join(lines[: sentences // 2]) + "\n\n" + " ".join(lines[sentences // 2:]) + "\n"


def minimal_pdf(text: str) -> bytes:
    """A one-page PDF with a text layer (Helvetica), written by hand so the test needs no PDF writer."""
    words, lines = text.split(), []
    while words:
        lines.append(" ".join(words[:12]))
        words = words[12:]
    content = "BT /F1 10 Tf 50 750 Td 12 TL " + " ".join(f"({line}) Tj T*" for line in lines) + " ET"
    objects = ["<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
               "/Resources << /Font << /F1 5 0 R >> >> >>",
               f"<< /Length {len(content)} >>\nstream\n{content}\nendstream",
               "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out, offsets = b"%PDF-1.4\n", []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    return out + f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()


def mixed_documents(root: Path) -> Path:
    """A team's folder: 24 prose documents in every format, plus the mess real folders have."""
    rng = random.Random(7)
    docs = root / "docs"
    (docs / "guides").mkdir(parents=True)
    (docs / "licences" / "a").mkdir(parents=True)
    (docs / "licences" / "b").mkdir(parents=True)
    for number in range(14):
        (docs / "guides" / f"guide-{number:02d}.txt").write_text(prose(rng, 8))
    for number in range(3):
        (docs / "guides" / f"topic-{number}.md").write_text(f"# Topic {number}\n\n{prose(rng, 8)}")
    # Mojibake: UTF-8 bytes once decoded as Latin-1 ("cafÃ©"), which ftfy repairs.
    with (docs / "guides" / "topic-0.md").open("a") as handle:
        handle.write("The caf\u00c3\u00a9 on the third floor opens early.\n")
    (docs / "guides" / "setup.rst").write_text(f"Setup\n=====\n\n{prose(rng, 8)}")
    boilerplate = "".join(f"<li><a href='/p{i}'>Products and services page {i}</a></li>" for i in range(30))
    (docs / "guides" / "portal.html").write_text(
        f"<html><head><title>Operator portal</title></head><body><nav><ul>{boilerplate}</ul></nav>"
        f"<article><h1>Operator portal</h1><p>{prose(rng, 4)}</p><p>{prose(rng, 4)}</p></article>"
        "<footer>Copyright 2024 Example Corp. All rights reserved. Privacy policy. Cookie settings.</footer>"
        "</body></html>")
    (docs / "manual.pdf").write_bytes(minimal_pdf(prose(rng, 6)))
    (docs / "guides" / "changes.txt.gz").write_bytes(gzip.compress(prose(rng, 8).encode()))
    (docs / "legacy.txt").write_bytes(f"Caf\xe9 notes. {prose(rng, 8)}".encode("cp1252"))
    with zipfile.ZipFile(docs / "bundle.zip", "w") as archive:
        archive.writestr("bundle/readme.md", f"# Bundle\n\n{prose(rng, 8)}")
        archive.writestr("bundle/logo.png", b"\x89PNG\r\n\x1a\n")
    buffer = io.BytesIO(prose(rng, 8).encode())
    with tarfile.open(docs / "export.tar.gz", "w:gz") as archive:
        info = tarfile.TarInfo("export/page.txt")
        info.size = len(buffer.getvalue())
        archive.addfile(info, buffer)
    (docs / "records.jsonl").write_text("".join(json.dumps({"id": f"r{i}", "body": prose(rng, 8)}) + "\n" for i in range(2)))
    # The mess: duplicates, near duplicates, a binary, an image, junk and another language.
    original = (docs / "guides" / "guide-00.txt").read_text()
    (docs / "guides" / "zz-guide-00-copy.txt").write_text(original.upper().replace(" ", "  "))
    words = original.split()
    words[-3] = "different"  # one word of ~190 changed: Jaccard of the 5-gram sets is about 0.95
    (docs / "guides" / "zz-guide-00-edited.txt").write_text(" ".join(words))
    for folder in ("a", "b"):
        (docs / "licences" / folder / "COPYING").write_text(MIT_LICENCE)
    (docs / "blob.txt").write_bytes(bytes(range(256)) * 8)
    (docs / "diagram.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    (docs / "stub.txt").write_text("To be written.\n")
    (docs / "spam.txt").write_text("Buy now and save big today!\n" * 40)
    (docs / "german.txt").write_text(
        "Der Dienst liest die Konfigurationsdatei beim Start und schreibt danach jede Stunde ein neues Protokoll. "
        "Wenn die Festplatte voll ist, werden alte Sicherungen automatisch gelöscht, damit der Betrieb weiterläuft. "
        "Die Verwaltung erfolgt über eine einfache Oberfläche, die jeder Mitarbeiter ohne Schulung bedienen kann.\n")
    return docs


NEW = ["--split", "0.5,0.25,0.25", "--min-term-docs", "2", "--workers", "1", "--text-field", "body"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    docs = mixed_documents(tmp_path_factory.mktemp("input"))
    out = tmp_path_factory.mktemp("suites") / "team"
    main(["suite", "new", "team", "--docs", str(docs), "--out", str(out), *NEW])
    return out


def read_jsonl(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def test_mixed_folder_gives_the_expected_counts(built):
    card = (built / "README.md").read_text()
    corpus = read_jsonl(built / "corpus.jsonl.gz")
    ids = {record["id"] for record in corpus}
    # 34 supported documents (two PNGs are not); the binary blob is unreadable; the stub, the spam and
    # the German text are dropped; the upper-cased copy and the second licence are exact duplicates,
    # the edited guide a near one: 26 prose documents and one licence are kept.
    assert "| supported documents | 34 | unsupported: .png 2 |" in card
    assert "| read and extracted | 33 | 1 unreadable (below); 1 repaired by ftfy; " in card
    assert "`docs/blob.txt`: binary content" in card
    assert "| passed the filters | 30 | dropped: language 1, repeated_lines 1, too_short 1 |" in card
    assert "| after exact de-duplication | 28 | 2 exact duplicates |" in card
    assert "| after near de-duplication | 27 | 1 near duplicates" in card
    assert "decoded as utf-8 30, html 1, cp1252 1, pdf 1" in card
    assert len(corpus) == 27
    assert "docs/guides/guide-00.txt" in ids and "docs/guides/zz-guide-00-copy.txt" not in ids
    assert "docs/guides/zz-guide-00-edited.txt" not in ids
    assert {"docs/bundle.zip!/bundle/readme.md", "docs/export.tar.gz!/export/page.txt", "docs/records.jsonl#r0",
            "docs/manual.pdf", "docs/legacy.txt", "docs/guides/changes.txt.gz", "docs/licences/a/COPYING"} <= ids
    dropped = read_jsonl(built / "audit" / "dropped.jsonl")
    assert [(line["id"], line["reason"], line["value"]) for line in dropped] == [
        ("docs/german.txt", "language", "de"), ("docs/spam.txt", "repeated_lines", 0.975),
        ("docs/stub.txt", "too_short", 3)]
    assert "| repeated_lines | 1 | repeated-line share above --max-repeated-lines 0.3 | 0.975 · 0.975 · 0.975 |" in card


def test_html_boilerplate_is_gone_and_legacy_text_is_repaired(built):
    corpus = {record["id"]: record for record in read_jsonl(built / "corpus.jsonl.gz")}
    portal = corpus["docs/guides/portal.html"]
    assert portal["title"] == "Operator portal"
    assert "Products and services" not in portal["text"] and "Cookie settings" not in portal["text"]
    assert corpus["docs/legacy.txt"]["text"].startswith("Café notes.")
    assert "The café on the third floor" in corpus["docs/guides/topic-0.md"]["text"]
    assert corpus["docs/guides/topic-0.md"]["title"] == "Topic 0"
    assert len(corpus["docs/manual.pdf"]["text"].split()) > 60


def test_duplicate_clusters_are_written_for_review(built):
    clusters = read_jsonl(built / "audit" / "duplicates.jsonl")
    members = {d["doc_id"]: (c["kept"], d["match"]) for c in clusters for d in c["duplicates"]}
    assert members["docs/guides/zz-guide-00-copy.txt"] == ("docs/guides/guide-00.txt", "exact")
    assert members["docs/guides/zz-guide-00-edited.txt"][0] == "docs/guides/guide-00.txt"
    assert members["docs/guides/zz-guide-00-edited.txt"][1] == "near"


def test_the_suite_validates_passes_the_leakage_check_and_names_its_tasks(built, capsys):
    main(["suite", "validate", str(built)])
    assert capsys.readouterr().out.startswith("ok: suite team: 3 tasks")
    assert check_leakage(built) == []
    suite = load_suite(built)
    assert [task.type for task in suite.tasks] == ["perplexity", "multiple_choice", "multiple_choice"]
    for task in suite.tasks:
        for example in task.examples["test"]:
            assert suite_split(built, example["source"]["doc_id"]) == "test"
    assert "#  - name: qa" in (built / "suite.yaml").read_text()


def suite_split(suite_dir: Path, doc_id: str) -> str:
    return next(r["split"] for r in read_jsonl(suite_dir / "corpus.jsonl.gz") if r["id"] == doc_id)


def test_cloze_masks_a_domain_term_among_domain_terms(built):
    terms = [line.split("\t")[0] for line in (built / "audit" / "terms.tsv").read_text().splitlines()[1:]]
    assert set(TERMS) <= set(terms)
    for example in read_jsonl(built / "term-cloze" / "test.jsonl.gz"):
        assert all(choice.strip() in terms for choice in example["choices"])
        assert all(choice.startswith(" ") and choice[1] != " " for choice in example["choices"])  # one form for all
        assert len(set(example["choices"])) == 4


def test_tiny_model_evaluates_the_new_suite(built, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DOMAINBENCH_CACHE", str(tmp_path / "cache"))
    main(["eval", "--model", "tiny-random-llama", "--suite", str(built), "--limit", "3", "--device", "cpu",
          "--output", str(tmp_path / "run")])
    out = capsys.readouterr().out
    assert "term-cloze" in out and "known-item" in out and "token_perplexity" in out
    assert sorted(p.name for p in (tmp_path / "run" / "results" / "base").iterdir()) == [
        "known-item.json", "perplexity.json", "term-cloze.json"]


def test_a_missing_path_exits_2_and_writes_nothing(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["suite", "new", "x", "--docs", str(tmp_path / "nope"), "--out", str(tmp_path / "x")])
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: --docs {tmp_path / 'nope'}: no such file or directory"
    assert list(tmp_path.iterdir()) == []


def test_a_folder_without_readable_documents_exits_2(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "blob.txt").write_bytes(bytes(range(256)))
    (tmp_path / "in" / "photo.jpg").write_bytes(b"\xff\xd8\xff")
    with pytest.raises(SystemExit) as exited:
        main(["suite", "new", "x", "--docs", str(tmp_path / "in"), "--out", str(tmp_path / "x"), "--workers", "1"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "no readable documents" in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


@pytest.mark.parametrize("flag, value, message", [
    ("--split", "0.5,0.5", "--split 0.5,0.5: expected three fractions"),
    ("--max-symbol-share", "1.5", "--max-symbol-share 1.5: expected a share between 0 and 1"),
    ("--languages", "en,xx", "--languages en,xx: expected 'any' or ISO 639-1 codes"),
    ("--choices", "1", "--choices 1: expected at least 2"),
])
def test_bad_flag_values_exit_2_naming_the_flag(tmp_path, capsys, flag, value, message):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("text " * 50)
    with pytest.raises(SystemExit) as exited:
        main(["suite", "new", "x", "--docs", str(tmp_path / "in"), "--out", str(tmp_path / "x"), flag, value])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_an_existing_suite_is_replaced_only_with_force(built, tmp_path, capsys):
    copy = tmp_path / "team"
    shutil.copytree(built, copy)
    with pytest.raises(SystemExit):
        main(["suite", "new", "team", "--docs", str(tmp_path), "--out", str(copy)])
    assert "pass --force" in capsys.readouterr().err
    assert (copy / "suite.yaml").is_file()


@pytest.mark.skipif(not Path("/usr/share/doc/dpkg").is_dir(), reason="needs Debian's /usr/share/doc")
def test_a_sample_of_usr_share_doc_builds_with_two_workers(tmp_path, capsys):
    sample = tmp_path / "doc"
    packages = sorted(p for p in Path("/usr/share/doc").iterdir() if (p / "copyright").is_file())[:40]
    for package in packages:
        shutil.copytree(package, sample / package.name, symlinks=False, ignore_dangling_symlinks=True,
                        ignore=shutil.ignore_patterns("*.gz", "*.pdf"))
    main(["suite", "new", "debian", "--docs", str(sample), "--out", str(tmp_path / "debian"), "--workers", "2",
          "--test-examples", "20", "--split", "0.6,0.2,0.2"])
    out = capsys.readouterr().out
    assert "exact" in out
    card = (tmp_path / "debian" / "README.md").read_text()
    duplicates = read_jsonl(tmp_path / "debian" / "audit" / "duplicates.jsonl")
    assert duplicates, "identical copyright files of sibling packages should cluster"
    assert "Duplicate rate" in card
    main(["suite", "validate", str(tmp_path / "debian")])
    assert check_leakage(tmp_path / "debian") == []


@pytest.mark.slow
def test_run_evaluates_base_rag_and_adapter_on_the_new_suite(built, tmp_path, monkeypatch):
    from reports.schema import load_result

    monkeypatch.setenv("DOMAINBENCH_CACHE", str(tmp_path / "cache"))
    main(["run", "--suite", str(built), "--model", "tiny-random-llama", "--configurations", "base,rag,adapter",
          "--profile", "quick", "--limit", "2", "--device", "cpu", "--output", str(tmp_path), "--name", "team"])
    results = tmp_path / "team" / "results"
    for configuration in ("base", "rag", "adapter"):
        assert sorted(p.name for p in (results / configuration).iterdir()) == [
            "known-item.json", "perplexity.json", "term-cloze.json"]
    known_item = load_result(results / "rag" / "known-item.json")
    assert {"accuracy", "recall@4", "mrr"} <= known_item.metrics.keys()   # retrieval judged against its own document
    assert "mrr" not in load_result(results / "rag" / "term-cloze.json").metrics  # exclude-source: not judged
    assert (tmp_path / "team" / "report.md").is_file()
