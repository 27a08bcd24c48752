"""`domainbench index …`: build a retrieval index over a corpus and search it from the shell."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from harness.atomic import check_writable
from harness.errors import DomainbenchError
from harness.manifest import check_replaceable
from harness.models import cache_dir
from reports.formatting import slug
from retrieval.chunking import (
    DEFAULT_MAX_TOKENS,
    DEFAULT_OVERLAP_TOKENS,
    ChunkingSettings,
)
from retrieval.embedding import DEFAULT_ENCODER
from retrieval.index import INDEX_KINDS

SNIPPET_CHARS = 160


@click.group("index")
def index_group() -> None:
    """Build and search FAISS indexes over a suite's corpus or your own documents."""


@index_group.command("build")
@click.option("--suite", "suite_spec", default=None, help="Index this suite's corpus (builtin name or suite dir).")
@click.option("--corpus", "corpus_path", type=click.Path(path_type=Path), default=None,
              help="A folder of .txt/.md files, or a .jsonl/.jsonl.gz with id, text[, title, section].")
@click.option("--encoder", default=DEFAULT_ENCODER, show_default=True,
              help="Builtin encoder, sentence-transformers model dir, or hub id.")
@click.option("--kind", type=click.Choice(INDEX_KINDS), default="flat", show_default=True,
              help="flat is exact; hnsw and ivf are approximate (their recall against flat is reported).")
@click.option("--param", "params", multiple=True, metavar="KEY=INT",
              help="Index parameter, e.g. m=32, ef_search=128 (hnsw) or nlist=256, nprobe=32 (ivf).")
@click.option("--chunk-tokens", type=int, default=DEFAULT_MAX_TOKENS, show_default=True,
              help="Most encoder tokens per chunk.")
@click.option("--overlap", type=int, default=DEFAULT_OVERLAP_TOKENS, show_default=True,
              help="Tokens shared by consecutive chunks of a section.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Index directory (default: <cache>/indexes/<corpus>-<encoder>-<kind>).")
@click.option("--device", default=None, help="cpu, cuda … (default: cuda if present).")
@click.option("--batch-size", type=int, default=64, show_default=True, help="Texts per encoder batch.")
@click.option("--force", is_flag=True,
              help="Rebuild even when the manifest says the index is up to date, and replace OUT even when it "
                   "holds something other than an index.")
def build_command(suite_spec: str | None, corpus_path: Path | None, encoder: str, kind: str, params: tuple[str, ...],
                  chunk_tokens: int, overlap: int, out_dir: Path | None, device: str | None, batch_size: int,
                  force: bool) -> None:
    """Chunk, embed and index a corpus; reuse OUT when nothing it was built from changed."""
    from retrieval.corpus import load_corpus
    from retrieval.index import build_index
    from tasks.suite import suite_corpus_path

    if (suite_spec is None) == (corpus_path is None):
        raise DomainbenchError("index build: give exactly one of --suite NAME or --corpus PATH")
    source = suite_corpus_path(suite_spec) if suite_spec else corpus_path
    name = suite_spec if suite_spec and not Path(suite_spec).exists() else _stem(source)
    out_dir = out_dir or cache_dir() / "indexes" / slug(f"{name}-{Path(encoder).name}-{kind}", fallback="index")
    check_replaceable(out_dir, force=force, option="--out")
    check_writable(out_dir.parent, label=f"--out {out_dir}")
    documents = load_corpus(source)
    result = build_index(documents, out_dir, encoder=encoder, kind=kind, params=_parse_params(params),
                         chunking=ChunkingSettings(chunk_tokens, overlap), device=device, batch_size=batch_size,
                         source=str(source), force=force)
    click.echo(_summary(result.manifest, out_dir, reused=result.reused))


@index_group.command("search")
@click.argument("index_dir", type=click.Path(path_type=Path))
@click.argument("query")
@click.option("-k", "k", type=click.IntRange(min=1), default=5, show_default=True, help="Chunks to return.")
@click.option("--hybrid", is_flag=True, help="Fuse dense and BM25 scores (min-max normalised, mixed half and half).")
@click.option("--device", default=None, help="cpu, cuda … (default: cuda if present).")
def search_command(index_dir: Path, query: str, k: int, hybrid: bool, device: str | None) -> None:
    """Print the K chunks of INDEX_DIR most similar to QUERY, best first."""
    from retrieval.bm25 import HybridRetriever
    from retrieval.retriever import Retriever

    retriever = (HybridRetriever if hybrid else Retriever).load(index_dir, device=device)
    hits = retriever.search(query, k)
    table = Table(title=f"{query!r} in {index_dir}")
    for column in ("rank", "score", "chunk", "section", "text"):
        table.add_column(column, justify="right" if column in ("rank", "score") else "left")
    for rank, hit in enumerate(hits, start=1):
        snippet = " ".join(hit.text.split())
        snippet = snippet if len(snippet) <= SNIPPET_CHARS else snippet[:SNIPPET_CHARS - 1] + "…"
        table.add_row(str(rank), f"{hit.score:.3f}", hit.chunk_id, hit.section, snippet)
    Console(width=None if sys.stdout.isatty() else 200).print(table)


def _summary(manifest: dict, out_dir: Path, *, reused: bool) -> str:
    counts, index = manifest["counts"], manifest["index"]
    lines = [f"{'reused (inputs unchanged)' if reused else 'built'}: {out_dir}",
             f"  {counts['documents']} documents -> {counts['chunks']} chunks "
             f"({manifest['chunking']['max_tokens']} tokens, overlap {manifest['chunking']['overlap_tokens']})",
             f"  encoder {manifest['encoder']['spec']}: {manifest['chunks_per_second']} chunks/s",
             f"  index {index['kind']} {index['params']}: {index['file_bytes'] / 2**20:.1f} MiB, "
             f"built in {manifest['build_seconds']:.1f} s"]
    recall = manifest.get("recall_vs_exact")
    if recall:
        lines.append(f"  recall@{recall['k']} vs exact: {recall['recall']:.4f} ({recall['queries']} queries)")
    return "\n".join(lines)


def _parse_params(pairs: tuple[str, ...]) -> dict[str, int]:
    params = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if not key or not value.strip().isdigit():
            raise DomainbenchError(f"--param {pair!r}: expected KEY=INTEGER, e.g. ef_search=128")
        params[key.strip()] = int(value)
    return params


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".jsonl.gz", ".jsonl"):
        if name.endswith(suffix):
            return path.parent.name if name.startswith("corpus") else name[: -len(suffix)]
    return name


COMMANDS = [index_group]
