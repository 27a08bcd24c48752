"""Entity labels from man-page fonts, and DESCRIPTION sentences annotated with them.

man-pages(7) fixes the font conventions the labels rest on: functions, constants and error
names are bold; filenames, header files and types are italic (arguments are italic too, and
get no label).
"""

from __future__ import annotations

import re

from tasks.manpages.roff import BOLD, Paragraph

# The errno names Linux defines (errno(3)); a closed list, so that bold EOF or EXIT_SUCCESS are
# constants and not errors.
ERRNO_NAMES = frozenset(
    """E2BIG EACCES EADDRINUSE EADDRNOTAVAIL EADV EAFNOSUPPORT EAGAIN EALREADY EBADE EBADF EBADFD
    EBADMSG EBADR EBADRQC EBADSLT EBFONT EBUSY ECANCELED ECHILD ECHRNG ECOMM ECONNABORTED
    ECONNREFUSED ECONNRESET EDEADLK EDEADLOCK EDESTADDRREQ EDOM EDOTDOT EDQUOT EEXIST EFAULT EFBIG
    EHOSTDOWN EHOSTUNREACH EHWPOISON EIDRM EILSEQ EINPROGRESS EINTR EINVAL EIO EISCONN EISDIR
    EISNAM EKEYEXPIRED EKEYREJECTED EKEYREVOKED EL2HLT EL2NSYNC EL3HLT EL3RST ELIBACC ELIBBAD
    ELIBEXEC ELIBMAX ELIBSCN ELNRNG ELOOP EMEDIUMTYPE EMFILE EMLINK EMSGSIZE EMULTIHOP ENAMETOOLONG
    ENAVAIL ENETDOWN ENETRESET ENETUNREACH ENFILE ENOANO ENOBUFS ENOCSI ENODATA ENODEV ENOENT
    ENOEXEC ENOKEY ENOLCK ENOLINK ENOMEDIUM ENOMEM ENOMSG ENONET ENOPKG ENOPROTOOPT ENOSPC ENOSR
    ENOSTR ENOSYS ENOTBLK ENOTCONN ENOTDIR ENOTEMPTY ENOTNAM ENOTRECOVERABLE ENOTSOCK ENOTSUP
    ENOTTY ENOTUNIQ ENXIO EOPNOTSUPP EOVERFLOW EOWNERDEAD EPERM EPFNOSUPPORT EPIPE EPROTO
    EPROTONOSUPPORT EPROTOTYPE ERANGE EREMCHG EREMOTE EREMOTEIO ERESTART ERFKILL EROFS ESHUTDOWN
    ESOCKTNOSUPPORT ESPIPE ESRCH ESRMNT ESTALE ESTRPIPE ETIME ETIMEDOUT ETOOMANYREFS ETXTBSY
    EUCLEAN EUNATCH EUSERS EWOULDBLOCK EXDEV EXFULL""".split()
)

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CONSTANT = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+|[A-Z][A-Z0-9]{2,}")
_HEADER = re.compile(r"<[A-Za-z0-9_./+-]+\.h>")
_PATH = re.compile(r"/[^\s,;]*[A-Za-z0-9_\]*/]")
_TYPE = re.compile(r"(?:struct|union|enum) [A-Za-z_][A-Za-z0-9_]*|[A-Za-z_][A-Za-z0-9_]*_t")
# A cross-reference to a page of functions ("link(2)", "printf(3)") names a function.
_FUNCTION_REFERENCE = re.compile(r"\((?:2|3)[a-z]*\)")
_SENTENCE_END = re.compile(r"""[.!?]["')\]]*$""")

MIN_SENTENCE_CHARS, MAX_SENTENCE_CHARS = 30, 400


def entity_type(span: str, font: str, following: str) -> str | None:
    """The entity type a bold/italic span names, from its font, its shape and what follows it."""
    if _IDENTIFIER.fullmatch(span) and (following.startswith("()") or _FUNCTION_REFERENCE.match(following)):
        return "FUNCTION"
    if _HEADER.fullmatch(span):
        return "HEADER"
    if _PATH.fullmatch(span):
        return "PATH"
    if _TYPE.fullmatch(span):
        return "TYPE"
    if font != BOLD:
        return None
    if span in ERRNO_NAMES:
        return "ERRNO"
    if _CONSTANT.fullmatch(span):
        return "CONSTANT"
    return None


def paragraph_entities(paragraph: Paragraph) -> list[dict]:
    """Typed entity spans of a paragraph (char offsets into its text), in text order."""
    entities = []
    for start, end, font in paragraph.styled:
        # Trailing punctuation sometimes sits inside the font run (".BR O_CREAT ," is clean,
        # "\fBO_CREAT,\fP" is not); the entity is the run without it.
        span = paragraph.text[start:end].rstrip(".,;:")
        while span and span[0] == " ":
            span, start = span[1:], start + 1
        end = start + len(span.rstrip())
        span = paragraph.text[start:end]
        kind = entity_type(span, font, paragraph.text[end:])
        if span and kind:
            entities.append({"type": kind, "start": start, "end": end})
    return entities


def sentences(paragraph: Paragraph) -> list[tuple[str, list[dict]]]:
    """The paragraph cut into sentences with their entities (offsets re-based to the sentence).

    man-pages(7) asks for each sentence to start on a new source line, so a sentence ends where an
    input line ends with a full stop — "e.g." in mid-line does not cut it.
    """
    entities = paragraph_entities(paragraph)
    bounds, start = [], 0
    for end in paragraph.line_ends:
        if _SENTENCE_END.search(paragraph.text[start:end].rstrip()):
            bounds.append((start, end))
            start = end
    if start < len(paragraph.text):
        bounds.append((start, len(paragraph.text)))
    result = []
    for start, end in bounds:
        raw = paragraph.text[start:end]
        lead = len(raw) - len(raw.lstrip())
        text = raw.strip()
        offset = start + lead
        inside = [
            {"type": e["type"], "start": e["start"] - offset, "end": e["end"] - offset}
            for e in entities
            if e["start"] >= offset and e["end"] <= offset + len(text)
        ]
        if MIN_SENTENCE_CHARS <= len(text) <= MAX_SENTENCE_CHARS:
            result.append((text, inside))
    return result
