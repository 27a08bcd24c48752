"""Finding the man-pages 6.03 pages, reading each once, and the page-level train/dev/test split."""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path

from tasks.manpages.render import render_page, rendered_sections
from tasks.manpages.roff import raw_sections, th_fields
from tasks.manpages.structure import name_line

MAN_PAGES_SOURCE = "Linux man-pages 6.03"
SECTIONS = ("2", "3", "4", "5", "7")
# Split by page, from a hash of the page id: adding or removing a page never moves another.
SPLIT_BUCKETS = (("train", 70), ("dev", 80), ("test", 100))


@dataclass
class Page:
    """One man page: identity, split, its NAME line, rendered text and raw markup by section."""

    id: str  # file name without .gz: "rename.2", "stat.3type"
    section: str  # the manual section digit: "2", "3", "4", "5", "7"
    split: str
    names: list[str]
    description: str  # the NAME line's text after the dash
    text: str  # groff-rendered plain text, running header and footer removed
    rendered: dict[str, str]  # rendered text by section heading, bodies dedented
    markup: dict[str, list[str]]  # raw roff lines by section heading

    @property
    def title(self) -> str:
        return f"{self.names[0] if self.names else self.id}({self.id.rsplit('.', 1)[1]})"


def page_split(page_id: str) -> str:
    """"train", "dev" or "test" for a page, fixed by sha256 of its id (70/10/20)."""
    bucket = int(hashlib.sha256(page_id.encode("utf-8")).hexdigest()[:8], 16) % 100
    return next(split for split, upper in SPLIT_BUCKETS if bucket < upper)


def candidate_paths(source: Path) -> list[Path]:
    """Regular page files of the suite's sections, sorted: symlinked aliases are not pages."""
    paths = []
    for section in SECTIONS:
        folder = source / f"man{section}"
        if folder.is_dir():
            paths.extend(path for path in folder.iterdir() if path.name.endswith(".gz") and not path.is_symlink())
    return sorted(paths, key=lambda path: path.as_posix())


def read_source(path: Path) -> str:
    """The roff source of a page file (gzipped or not)."""
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return data.decode("utf-8", "replace")


def load_page(path: Path) -> Page | None:
    """Parse and render one page; None for pages outside the suite (other projects, `.so` links)."""
    source = read_source(path)
    fields = th_fields(source)
    if len(fields) < 4 or fields[3] != MAN_PAGES_SOURCE or not fields[1][:1] in SECTIONS:
        return None
    page_id = path.name[: -len(".gz")] if path.name.endswith(".gz") else path.name
    markup = raw_sections(source)
    names, description = name_line(markup.get("NAME", []))
    text = render_page(source)
    return Page(
        id=page_id,
        section=fields[1][0],
        split=page_split(page_id),
        names=names,
        description=description,
        text=text,
        rendered=rendered_sections(text),
        markup=markup,
    )
