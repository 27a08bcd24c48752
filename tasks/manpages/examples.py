"""Per-page example makers for the corpus, summarize, section, ner and perplexity.

Each maker takes one page and returns its records in page order, so a sample of pages can be
rebuilt on its own and compared with the committed files (the question makers are in
`questions.py`).
"""

from __future__ import annotations

from tasks.manpages.entities import sentences
from tasks.manpages.pages import Page
from tasks.manpages.render import bounded_paragraphs
from tasks.manpages.roff import paragraphs

SUMMARY_DOCUMENT_CHARS = 1200
EXCERPT_CHARS, MIN_EXCERPT_CHARS = 600, 150
# Sections 4, 5 and 7 have few pages (29, 33, 121 against 619 in section 3): more excerpts per
# page keep those classes from vanishing in dev and test.
EXCERPTS_PER_PAGE = {"2": 1, "3": 1, "4": 3, "5": 3, "7": 3}
NER_SENTENCES_PER_PAGE = 40
PERPLEXITY_CHARS = 4000
# Sections that are about the page itself, or only list other pages: not prose about the topic.
_NOT_BODY = ("NAME", "LIBRARY", "SYNOPSIS", "SEE ALSO", "COLOPHON")


def corpus_record(page: Page) -> dict:
    """The whole rendered page: the domain corpus and the retrieval knowledge base document."""
    return {"id": page.id, "title": page.title, "section": page.section, "split": page.split, "text": page.text}


def summarize_examples(page: Page) -> list[dict]:
    """DESCRIPTION's first paragraphs → the NAME line's description ("open and possibly create a file")."""
    document = bounded_paragraphs(page.rendered.get("DESCRIPTION", ""), SUMMARY_DOCUMENT_CHARS)
    if not page.description or len(document) < 100:
        return []
    return [{"id": page.id, "document": document, "summary": page.description, "source": _source(page)}]


def section_examples(page: Page) -> list[dict]:
    """Excerpts of the page body (NAME and the running titles that name the section are gone)."""
    excerpts = _excerpts(_body(page), EXCERPTS_PER_PAGE[page.section])
    return [{"id": f"{page.id}#{index}", "text": text, "label": page.section, "source": _source(page)}
            for index, text in enumerate(excerpts)]


def _body(page: Page) -> str:
    if "DESCRIPTION" in page.rendered:
        return page.rendered["DESCRIPTION"]
    return "\n\n".join(body for heading, body in page.rendered.items() if heading not in _NOT_BODY)


def _excerpts(body: str, count: int) -> list[str]:
    """Up to `count` consecutive excerpts of whole paragraphs, each at most EXCERPT_CHARS."""
    excerpts, current = [], []
    for paragraph in (p.strip() for p in body.split("\n\n")):
        if not paragraph:
            continue
        if current and sum(len(p) + 1 for p in current) + len(paragraph) > EXCERPT_CHARS:
            excerpts.append(bounded_paragraphs("\n\n".join(current), EXCERPT_CHARS))
            current = []
        current.append(paragraph)
    if current:
        excerpts.append(bounded_paragraphs("\n\n".join(current), EXCERPT_CHARS))
    return [text for text in excerpts if len(text) >= MIN_EXCERPT_CHARS][:count]


def ner_examples(page: Page) -> list[dict]:
    """DESCRIPTION sentences with at least one entity; spans come from the bold/italic markup."""
    examples = []
    for paragraph in paragraphs(page.markup.get("DESCRIPTION", []), tags=False):
        for text, entities in sentences(paragraph):
            if entities:
                examples.append({"id": f"{page.id}#{len(examples)}", "text": text, "entities": entities,
                                 "source": _source(page)})
    return examples[:NER_SENTENCES_PER_PAGE]


def perplexity_examples(page: Page) -> list[dict]:
    """The page's rendered text, cut at a line end within PERPLEXITY_CHARS."""
    text = page.text
    if len(text) > PERPLEXITY_CHARS:
        text = text[: text.rfind("\n", 0, PERPLEXITY_CHARS) + 1]
    return [{"id": page.id, "text": text, "source": _source(page)}]


def _source(page: Page) -> dict:
    """The corpus document an example was built from: what retrieval must not show it (tasks.rag_policy)."""
    return {"doc_id": page.id}
