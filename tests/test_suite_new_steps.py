"""The steps of `suite new` one at a time: extraction, filters, PII, de-duplication, splits, terms,
examples, the leakage guard, and the multiple_choice task type they feed."""

import io
import random
import tarfile
from collections import Counter

import pytest

from harness.errors import DomainbenchError
from harness.requests import Loglikelihood
from retrieval.matching import normalized
from tasks import multiple_choice
from tasks.documents.boilerplate import LineFrequency, line_keys, remove_boilerplate
from tasks.documents.clean import (
    CleaningConfig,
    Drop,
    detect_language,
    drop_reason,
    duplicated_ngram_share,
    repeated_line_share,
    scrub_pii,
    symbol_share,
    top_ngram_share,
)
from tasks.documents.collect import Collection, kind_of, walk_sources
from tasks.documents.dedup import Deduplicator, exact_key, minhash_signature
from tasks.documents.examples import (
    CappedSelection,
    ExampleSettings,
    cloze_examples,
    known_item_example,
    own_sentences,
    sentence_key,
    sentences,
)
from tasks.documents.extract import Unreadable, extract
from tasks.documents.overlap import PhraseFinder
from tasks.documents.splits import parse_fractions, split_of
from tasks.documents.terms import TermCounts, document_words, select_terms
from tasks.leakage import KnowledgeBase, retrieval_leaks, task_leaks

ENGLISH = ("The scheduler reads its configuration file at start and writes a journal entry for every job it runs. "
           "When a job fails, the scheduler retries it twice and then sends a message to the operator on duty.")


# ----- collection and extraction -----------------------------------------------------------------

def test_kinds_come_from_names_with_gzip_seen_through():
    assert kind_of("readme") == ("text", False)
    assert kind_of("guide.md.gz") == ("markdown", True)
    assert kind_of("index.HTML") == ("html", False)
    assert kind_of("changelog.debian.gz") == (None, True)
    assert kind_of("logo.png") == (None, False)


def test_a_damaged_archive_is_reported_and_its_earlier_members_kept(tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name in ("a.txt", "b.txt"):
            data = (ENGLISH + name).encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    (tmp_path / "cut.tar.gz").write_bytes(buffer.getvalue()[:-40])
    collection = Collection()
    sources = list(walk_sources([tmp_path], collection))
    assert [source.doc_id.rsplit("/", 1)[-1] for source in sources][:1] == ["a.txt"]
    assert collection.unreadable and "archive cannot be read" in collection.unreadable[0][1]


def test_binary_bytes_are_unreadable_and_non_utf8_text_is_decoded():
    with pytest.raises(Unreadable, match="binary"):
        extract(b"\x00\x01\x02 text", "text")
    extracted = extract("na\xefve caf\xe9".encode("cp1252"), "text")
    assert (extracted.text, extracted.decoded_as) == ("naïve café", "cp1252")


def test_mojibake_is_repaired_and_layout_normalised():
    extracted = extract("The caf\u00c3\u00a9 opens.\r\n\r\n\r\n\r\nNext   \nline".encode(), "text")
    assert extracted.text == "The café opens.\n\nNext\nline"
    assert extracted.repaired


def test_markdown_and_rst_titles_are_their_first_heading():
    assert extract(b"intro\n\n## Install guide\n\ntext", "markdown").title == "Install guide"
    assert extract(b"Usage\n=====\n\ntext", "rst").title == "Usage"
    assert extract(b"plain text", "text").title == ""


# ----- filters -----------------------------------------------------------------------------------

def test_filters_name_the_first_rule_a_document_breaks_and_what_it_measured():
    config = CleaningConfig()
    assert drop_reason("", config) == Drop("empty", 0)
    assert drop_reason("too few words here", config) == Drop("too_short", 4)
    assert drop_reason(ENGLISH, config) is None
    assert drop_reason(ENGLISH + " {}[]<>|#" * 40, config).reason == "symbols"
    assert drop_reason("\n".join(["Same line again and again here."] * 20), config) == Drop("repeated_lines", 0.95)
    assert drop_reason(ENGLISH * 3, config).reason == "duplicated_5grams"
    assert drop_reason(ENGLISH, CleaningConfig(max_chars=100)) == Drop("too_long", len(ENGLISH))


def test_code_blocks_are_left_out_of_the_prose_rules():
    code = "```\nfn main() {\n    if x > 0 {\n        return;\n    }\n    if y > 0 {\n        return;\n    }\n}\n```"
    other = "Early returns keep the happy path flat; each guard below checks one input before any work is done."
    page = f"# Control flow\n{ENGLISH}\n{code}\n{other}\n{code}"
    assert repeated_line_share(page) > 0.3             # the whole page repeats `}` and `return;`
    assert drop_reason(page, CleaningConfig()) is None  # its prose does not


def test_stub_pages_are_dropped_as_redirects_and_long_pages_that_mention_one_are_not():
    stub = "This is an old link. The page has moved to the new book, which covers the same topics in more depth. " * 2
    assert drop_reason(stub, CleaningConfig()) == Drop("redirect", "This is an old link")
    assert drop_reason(" ".join([ENGLISH] * 4).replace("fails,", "fails, has moved to a backup,") + stub,
                       CleaningConfig(max_duplicated_5gram_share=1, max_top_bigram_share=1)) is None


def test_gopher_statistics_on_small_cases():
    assert symbol_share("ab!!") == 0.5
    assert repeated_line_share("a\nb\na\n\na") == 0.5
    assert top_ngram_share("a b a b".split(), 2) == 1.0
    assert top_ngram_share("a b c d".split(), 2) == 0.0
    assert duplicated_ngram_share("x y z x y z".split(), 3) == 0.5


def test_duplicated_ngram_share_matches_a_plain_loop():
    def plain(words, n):
        seen, covered = set(), [False] * len(words)
        for i in range(len(words) - n + 1):
            gram = tuple(words[i:i + n])
            if gram in seen:
                covered[i:i + n] = [True] * n
            seen.add(gram)
        total = sum(map(len, words))
        return sum(len(w) for w, c in zip(words, covered) if c) / total if total else 0.0
    rng = random.Random(0)
    for _ in range(200):
        words = [rng.choice(["a", "bb", "ccc"]) for _ in range(rng.randint(0, 40))]
        assert duplicated_ngram_share(words, 5) == pytest.approx(plain(words, 5))


def test_language_detection_is_offline_and_names_iso_codes():
    assert detect_language(ENGLISH) == "en"
    assert detect_language("Der Dienst liest die Konfigurationsdatei beim Start und schreibt ein Protokoll.") == "de"


def test_pii_scrub_replaces_addresses_and_phone_numbers_but_not_versions_or_dates():
    text, counts = scrub_pii("Mail jane.doe@example.org or call +44 20 7946 0958 or (555) 123-4567; "
                             "version 2.38.1 of 2024-01-31, port 8080.")
    assert text == "Mail <email> or call <phone> or <phone>; version 2.38.1 of 2024-01-31, port 8080."
    assert counts == {"email": 1, "phone": 2}


# ----- de-duplication and splits -----------------------------------------------------------------

def test_exact_keys_ignore_case_spacing_and_punctuation():
    assert exact_key("Hello,  World!") == exact_key("hello world")
    assert exact_key("hello world") != exact_key("hello there world")


def test_near_duplicates_cluster_under_the_first_and_distinct_texts_stay():
    rng = random.Random(1)
    base = [rng.choice(["alpha", "beta", "gamma", "delta", "omega", "sigma", "kappa"]) + str(rng.randint(0, 99))
            for _ in range(300)]
    edited = list(base)
    edited[150] = "changed"
    other = [word[::-1] for word in base]
    dedup = Deduplicator(0.8)
    texts = {"a": " ".join(base), "b": " ".join(edited), "c": " ".join(other), "d": " ".join(base).upper()}
    results = {doc: dedup.check(doc, exact_key(text), minhash_signature(text)) for doc, text in texts.items()}
    assert results["a"] is None and results["c"] is None
    assert (results["b"].match, results["d"].match) == ("near", "exact")
    assert results["b"].similarity > 0.9
    assert [d.doc_id for d in dedup.clusters["a"]] == ["b", "d"]


def test_splits_are_seeded_by_document_and_follow_the_fractions():
    ids = [f"doc-{i}" for i in range(4000)]
    splits = Counter(split_of(doc_id, 7, (0.8, 0.1, 0.1)) for doc_id in ids)
    assert 0.77 < splits["train"] / 4000 < 0.83 and 0.08 < splits["test"] / 4000 < 0.12
    assert [split_of(d, 7, (0.8, 0.1, 0.1)) for d in ids[:50]] == [split_of(d, 7, (0.8, 0.1, 0.1)) for d in ids[:50]]
    assert [split_of(d, 8, (0.8, 0.1, 0.1)) for d in ids[:50]] != [split_of(d, 7, (0.8, 0.1, 0.1)) for d in ids[:50]]
    with pytest.raises(DomainbenchError, match="--split 0.9,0.2,0.1"):
        parse_fractions("0.9,0.2,0.1")


# ----- terms and examples ------------------------------------------------------------------------

def test_domain_terms_are_frequent_here_rare_in_english_and_shared_by_documents():
    rng = random.Random(0)
    english = "the of and to in is that it was for on are with as his they be at one have this from".split()
    counts = TermCounts()
    for number in range(4):
        filler = " ".join(rng.choice(english) for _ in range(3000))
        text = (f"{filler} The systemd journal keeps logs; journalctl doesn't lose them. systemd restarts units. "
                f"private{number} contact admin@example.org")
        counts.add(document_words(text), len(text.split()))
    terms = [term.term for term in select_terms(counts, count=10, min_docs=3, min_ratio=100)]
    assert [term for term in terms if " " not in term][:2] == ["journalctl", "systemd"]
    assert "the" not in terms and "have" not in terms        # general English
    assert "doesn" not in terms                               # a word cut at its apostrophe
    assert not any(term.startswith("private") for term in terms)  # one document each
    assert "org" not in terms and "example" not in terms     # parts of an e-mail address


def test_terms_leave_out_code_paths_templates_and_placeholders():
    template = "This error code is no longer emitted by the compiler."
    rng = random.Random(0)
    english = "the of and to in is that it was for on are with as his they be at one have this from".split()
    verbs = ["rejects", "accepts", "flags", "checks"]
    counts = TermCounts()
    for number in range(4):
        filler = " ".join(rng.choice(english) for _ in range(3000))
        text = (f"# E000{number}\n{filler}. The borrow checker {verbs[number]} code{number} today. "
                f"{template}\nBuild it from src/main.rs first.\n```\nstruct Foo;\nlet bar = Foo::new();\n```\n"
                "A frobnicated Foo is rare in prose.")
        counts.add(document_words(text, frozenset({sentence_key(template)})), len(text.split()))
    terms = [term.term for term in select_terms(counts, count=20, min_docs=3, min_ratio=100)]
    assert "borrow checker" in terms
    assert "checker" not in terms                            # always inside "borrow checker"
    assert "emitted" not in terms                            # only in the template sentence
    assert "src" not in terms and "struct" not in terms      # a path and code
    assert "Foo" not in terms and "frobnicated" in terms     # a placeholder, even in prose


def test_cloze_masks_a_two_word_term_whole():
    doc = {"id": "d1", "text": "Every reference you write is checked by the borrow checker before the program runs."}
    terms = {"borrow checker": "borrow checker", "zorblax": "zorblax", "quuxd": "quuxd", "plonkdb": "plonkdb"}
    [example] = cloze_examples(doc, sentences(doc["text"]), terms, ExampleSettings(seed=1))
    assert example["text"] == "Every reference you write is checked by the"
    assert example["choices"][example["answer"]] == " borrow checker"


def test_known_item_queries_hold_neither_title_nor_headings_nor_templates():
    doc = {"id": "d1", "title": "E0499",
           "text": "# E0499\nA variable was borrowed as mutable more than once at a time, which E0499 forbids.\n"
                   "## Mutable borrows\nTwo mutable borrows of one value overlap in the example below here.\n"
                   "This error code is no longer emitted by the compiler and remains for old code.\n"
                   "The fix moves the second borrow after the last use of the first borrow."}
    titles = {"heading": ["E0499", "E0382", "E0502", "E0308", "E0106"]}
    templates = frozenset({sentence_key("This error code is no longer emitted by the compiler and remains for old code.")})
    example = known_item_example(doc, own_sentences(sentences(doc["text"]), templates), titles, ExampleSettings(seed=1))
    assert example["text"] == "The fix moves the second borrow after the last use of the first borrow."


def test_sentences_keep_prose_and_leave_code_and_fragments():
    text = "Install it.\n\nThe daemon reads the configuration file when the service starts up again.\n" \
           "x = {a: [1, 2], b: [3, 4]}; y = f(x) + g(x) * 2;"
    assert sentences(text) == ["The daemon reads the configuration file when the service starts up again."]


def test_cloze_masks_one_term_and_offers_unused_terms():
    doc = {"id": "d1", "text": "Operators restart the kvstore service after every upgrade of the cluster nodes."}
    terms = {"kvstore": "kvstore", "zorblax": "zorblax", "quuxd": "quuxd", "plonkdb": "plonkdb", "cluster": "cluster"}
    [example] = cloze_examples(doc, sentences(doc["text"]), terms, ExampleSettings(seed=1))
    assert example["text"] == "Operators restart the"
    assert example["suffix"] == " service after every upgrade of the cluster nodes."
    assert example["choices"][example["answer"]] == " kvstore"
    assert " cluster" not in example["choices"]             # the document uses it: could also fit
    assert sorted(example["choices"]) == [" kvstore", " plonkdb", " quuxd", " zorblax"]
    assert multiple_choice.completed_text(example) == doc["text"]


def test_known_item_asks_for_the_title_among_other_titles():
    doc = {"id": "d1", "title": "Backup guide", "text": "Backup guide\n\nNightly snapshots are copied to the "
                                                        "remote volume before the old ones are pruned."}
    titles = {"heading": ["Backup guide", "Install", "Upgrade", "Logs", "API"], "path": ["a/b.txt", "c/README"]}
    example = known_item_example(doc, sentences(doc["text"]), titles, ExampleSettings(seed=1))
    assert example["text"].startswith("Nightly snapshots")
    assert example["choices"][example["answer"]] == " Backup guide"
    assert len(example["choices"]) == 4 and example["source"] == {"doc_id": "d1"}
    assert "/" not in "".join(example["choices"])            # headings among headings, never among paths


def test_capped_selection_is_a_stable_sample_in_arrival_order():
    examples = [{"id": f"e{i}"} for i in range(100)]
    first, second = CappedSelection(10), CappedSelection(10)
    for example in examples:
        first.add(example)
    for example in reversed(examples):
        second.add(example)
    chosen = [e["id"] for e in first.examples()]
    assert len(chosen) == 10 and sorted(chosen, key=lambda i: int(i[1:])) == chosen
    assert set(chosen) == {e["id"] for e in second.examples()}


def test_phrase_finder_finds_whole_word_phrases_only():
    finder = PhraseFinder({"p1": "tune kernel clock now and then, again and again", "p2": "short phrase"})
    assert finder.found_in("adjtimex - Tune kernel clock now and then; again and again!") == {"p1"}
    assert finder.found_in("fine-tune kernel clocks now and then again and again") == set()
    assert finder.found_in("a short phrase here") == {"p2"}


# ----- the multiple_choice task type and its leakage rule ----------------------------------------

class _Task:
    metrics = tuple(multiple_choice.METRICS)


def test_multiple_choice_scores_choice_plus_suffix_and_normalises_by_length():
    example = {"id": "x", "text": "The", "choices": [" kvstore", " db"], "answer": 0, "suffix": " restarts."}
    requests = multiple_choice.requests_for_prompt(_Task, example, "The")
    assert [r.continuation for r in requests] == [" kvstore restarts.", " db restarts."]
    record = multiple_choice.score(_Task, example, [Loglikelihood(-9.0, False, 3), Loglikelihood(-8.0, False, 2)])
    assert record.scores["correct"] == 0.0            # -8 beats -9 summed
    assert record.scores["correct_norm"] == 1.0       # -9/18 beats -8/12 per character
    assert multiple_choice.rescore_record(_Task, record).scores == record.scores
    assert multiple_choice.check_example(_Task, {**example, "answer": 2}) == [("answer", "expected the index of the right choice, 0 to 1")]


def test_a_cloze_sentence_in_training_text_or_another_document_is_a_leak():
    example = {"id": "t", "text": "Operators restart the", "choices": [" kvstore", " db"], "answer": 0,
               "suffix": " service nightly.", "source": {"doc_id": "d-test"}}
    corpus = [{"id": "d-train", "split": "train", "text": "Operators restart the kvstore service nightly."},
              {"id": "d-test", "split": "test", "text": "Operators restart the kvstore service nightly."}]
    assert [leak.example_id for leak in task_leaks("cloze", "multiple_choice", {"test": [example]}, corpus)] == ["t"]
    leaks = retrieval_leaks("cloze", "multiple_choice", "exclude-source", [example], KnowledgeBase(corpus))
    assert "d-train" in leaks[0].reason
    clean = [{"id": "d-test", "split": "test", "text": "Operators restart the kvstore service nightly."}]
    assert task_leaks("cloze", "multiple_choice", {"test": [example]}, clean) == []
    assert normalized(multiple_choice.completed_text(example)).strip() == "operators restart the kvstore service nightly"


def test_boilerplate_is_a_prose_line_in_many_documents_and_code_is_never_boilerplate():
    overlay = "Press S or / to search in the book"
    texts = [f"# Page {n}\n{overlay}\nPage {n} explains topic {n}.\n```\n}}\n```" for n in range(10)]
    frequency = LineFrequency()
    for text in texts:
        frequency.add(line_keys(text))
    boilerplate = frequency.boilerplate(min_share=0.5, min_documents=5)
    cleaned, removed = remove_boilerplate(texts[3], boilerplate)
    assert removed == [overlay]
    assert cleaned == "# Page 3\nPage 3 explains topic 3.\n```\n}\n```"   # headings differ by their digits
    assert frequency.boilerplate(min_share=0.5, min_documents=11) == frozenset()


def test_a_meta_refresh_with_a_url_is_a_redirect_and_a_plain_reload_is_not():
    page = "<html><head><meta http-equiv='Refresh' content='{}'></head><body><main><h1>Status</h1><p>{}</p></main></body></html>"
    moved = extract(page.format("0; url=new/status.html", "Redirecting").encode(), "html")
    assert moved.redirect == "new/status.html"
    reloading = extract(page.format("300", ENGLISH).encode(), "html")
    assert reloading.redirect == "" and reloading.title == "Status" and "journal entry" in reloading.text
