"""`domainbench suite new NAME --docs PATH …`: a suite from a team's own documents, attached to the `suite` group.

Importing this module attaches the command; COMMANDS is empty because `suite_group` itself is
registered by cli.suite.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from cli.suite import suite_group
from harness.errors import DomainbenchError

_DEFAULTS = {"min_words": 30, "max_chars": 1_000_000, "max_symbol_share": 0.3, "min_word_share": 0.6,
             "max_repeated_lines": 0.3, "max_top_bigram": 0.2, "max_duplicated_5grams": 0.15, "boilerplate_share": 0.2}


@suite_group.command("new")
@click.argument("name")
@click.option("--docs", "docs", multiple=True, required=True, type=click.Path(path_type=Path),
              help="A folder, archive (.zip, .tar, .tar.gz) or file of documents; repeat for several.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="The suite directory to write (default: ./NAME).")
@click.option("--force", is_flag=True, help="Replace --out if it already exists.")
@click.option("--workers", type=int, default=os.cpu_count() or 1, show_default="all cores",
              help="Processes extracting and cleaning documents.")
@click.option("--split", "split", default="0.8,0.1,0.1", show_default=True, help="train,dev,test fractions of documents.")
@click.option("--seed", type=int, default=1234, show_default=True, help="Seed of the splits and of every example draw.")
@click.option("--min-words", type=int, default=_DEFAULTS["min_words"], show_default=True,
              help="Drop documents with fewer words (too short).")
@click.option("--max-chars", type=int, default=_DEFAULTS["max_chars"], show_default=True,
              help="Drop documents with more characters (too long).")
@click.option("--max-symbol-share", type=float, default=_DEFAULTS["max_symbol_share"], show_default=True,
              help="Drop documents whose prose (code blocks aside) is more than this share symbols (not letters or digits).")
@click.option("--min-word-share", type=float, default=_DEFAULTS["min_word_share"], show_default=True,
              help="Drop documents in which fewer than this share of words hold a letter (Gopher: 0.8).")
@click.option("--max-repeated-lines", type=float, default=_DEFAULTS["max_repeated_lines"], show_default=True,
              help="Drop documents in which more than this share of lines repeat an earlier line (Gopher).")
@click.option("--max-top-bigram", type=float, default=_DEFAULTS["max_top_bigram"], show_default=True,
              help="Drop documents whose most frequent word bigram covers more than this share of characters (Gopher).")
@click.option("--max-duplicated-5grams", type=float, default=_DEFAULTS["max_duplicated_5grams"], show_default=True,
              help="Drop documents whose repeated word 5-grams cover more than this share of characters (Gopher).")
@click.option("--boilerplate-share", type=float, default=_DEFAULTS["boilerplate_share"], show_default=True,
              help="Remove prose lines held by at least this share of the documents (and at least 5): navigation, "
                   "help overlays, footers (CCNet-style line frequency; code blocks are never touched).")
@click.option("--languages", default="en", show_default=True,
              help="Comma-separated ISO 639-1 codes of the languages kept (lingua detects them), or 'any'.")
@click.option("--scrub-pii", is_flag=True, help="Replace e-mail addresses and phone numbers with <email> and <phone>.")
@click.option("--near-dup-threshold", type=float, default=0.8, show_default=True,
              help="Estimated Jaccard similarity of word 5-gram sets above which two documents are near duplicates.")
@click.option("--terms", "n_terms", type=int, default=200, show_default=True, help="Domain terms to extract.")
@click.option("--min-term-docs", type=int, default=3, show_default=True, help="Training documents a term must appear in.")
@click.option("--min-term-ratio", type=float, default=100.0, show_default=True,
              help="How many times more frequent than in general English a term must be.")
@click.option("--test-examples", type=int, default=500, show_default=True,
              help="Test examples per task at most (dev: a quarter, train: twice as many).")
@click.option("--choices", type=int, default=4, show_default=True, help="Choices per cloze and known-item example.")
@click.option("--perplexity-chars", type=int, default=4000, show_default=True,
              help="Characters of each held-out document scored by the perplexity task.")
@click.option("--text-field", default="text", show_default=True, help="The text field of .jsonl documents.")
@click.option("--exclude", multiple=True, help="Glob of paths (relative to a --docs folder) to leave out; repeatable.")
def new_suite(name: str, docs: tuple[Path, ...], out_dir: Path | None, force: bool, workers: int, split: str, seed: int,
              languages: str, scrub_pii: bool, near_dup_threshold: float, n_terms: int, min_term_docs: int,
              min_term_ratio: float, test_examples: int, choices: int, perplexity_chars: int, text_field: str,
              exclude: tuple[str, ...], **thresholds) -> None:
    """Build suite NAME from documents: extraction, cleaning, de-duplication, splits, label-free tasks, data card."""
    from tasks.documents.build import SuiteOptions, build_documents_suite
    from tasks.documents.clean import CleaningConfig
    from tasks.documents.splits import parse_fractions

    out_dir = out_dir or Path(name)
    _check_flags(name=name, out_dir=out_dir, force=force, workers=workers, near_dup_threshold=near_dup_threshold,
                 counts={"--terms": n_terms, "--min-term-docs": min_term_docs, "--test-examples": test_examples,
                         "--perplexity-chars": perplexity_chars}, choices=choices, min_term_ratio=min_term_ratio,
                 **thresholds)
    cleaning = CleaningConfig(
        min_words=thresholds["min_words"], max_chars=thresholds["max_chars"],
        max_symbol_share=thresholds["max_symbol_share"], min_word_share=thresholds["min_word_share"],
        max_repeated_line_share=thresholds["max_repeated_lines"], max_top_bigram_share=thresholds["max_top_bigram"],
        max_duplicated_5gram_share=thresholds["max_duplicated_5grams"], languages=_languages(languages),
        boilerplate_share=thresholds["boilerplate_share"],
        scrub_pii=scrub_pii)
    options = SuiteOptions(name=name, docs=tuple(docs), cleaning=cleaning, near_duplicate_threshold=near_dup_threshold,
                           fractions=parse_fractions(split), seed=seed, terms=n_terms, min_term_documents=min_term_docs,
                           min_term_ratio=min_term_ratio, test_examples=test_examples, choices=choices,
                           perplexity_chars=perplexity_chars, text_field=text_field, exclude=tuple(exclude),
                           workers=workers)
    stats = build_documents_suite(options, out_dir)
    click.echo(f"{stats.documents} documents read in {stats.seconds:.1f} s "
               f"({stats.documents / max(stats.seconds, 1e-9):.1f} docs/s, {stats.bytes_in / 1e6 / max(stats.seconds, 1e-9):.2f} MB/s): "
               f"{len(stats.unreadable)} unreadable, {sum(stats.dropped.values())} dropped by filters, "
               f"{stats.exact_duplicates} exact and {stats.near_duplicates} near duplicates; {stats.kept} kept "
               f"(train {stats.split_documents['train']}, dev {stats.split_documents['dev']}, test {stats.split_documents['test']})")
    for task, counts in stats.examples.items():
        click.echo(f"  {task:<11} " + "  ".join(f"{s} {n}" for s, n in counts.items())
                   + (f"  (test examples dropped as leaks: {stats.leaks[task]})" if stats.leaks[task] else ""))
    click.echo(f"wrote {out_dir} (data card: {out_dir / 'README.md'})")


def _check_flags(*, name: str, out_dir: Path, force: bool, workers: int, near_dup_threshold: float,
                 counts: dict[str, int], choices: int, min_term_ratio: float, **thresholds) -> None:
    """One DomainbenchError naming the first bad flag, before any work starts."""
    if not name or "/" in name or name.startswith("."):
        raise DomainbenchError(f"suite name {name!r}: expected a plain name (no '/', not starting with '.')")
    if out_dir.exists() and not force and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise DomainbenchError(f"--out {out_dir}: already exists; pass --force to replace it")
    if workers < 1:
        raise DomainbenchError(f"--workers {workers}: expected at least 1")
    for flag, value in (("--near-dup-threshold", near_dup_threshold), *(
            (f"--{key.replace('_', '-')}", value) for key, value in thresholds.items() if isinstance(value, float))):
        if not 0 < value <= 1:
            raise DomainbenchError(f"{flag} {value}: expected a share between 0 and 1")
    for flag, value in (("--min-words", thresholds["min_words"]), ("--max-chars", thresholds["max_chars"]), *counts.items()):
        if value < 1:
            raise DomainbenchError(f"{flag} {value}: expected a positive number")
    if choices < 2:
        raise DomainbenchError(f"--choices {choices}: expected at least 2")
    if min_term_ratio <= 1:
        raise DomainbenchError(f"--min-term-ratio {min_term_ratio}: expected more than 1 (more frequent than in English)")


def _languages(value: str) -> tuple[str, ...]:
    if value.strip().lower() == "any":
        return ()
    from lingua import Language

    known = {language.iso_code_639_1.name.lower() for language in Language.all()}
    codes = tuple(code.strip().lower() for code in value.split(",") if code.strip())
    unknown = [code for code in codes if code not in known]
    if not codes or unknown:
        raise DomainbenchError(f"--languages {value}: expected 'any' or ISO 639-1 codes lingua knows "
                               f"({', '.join(sorted(known))}); unknown: {', '.join(unknown) or 'none given'}")
    return codes


COMMANDS: list = []
