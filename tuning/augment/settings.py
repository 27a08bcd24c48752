"""A recipe's `augment:` section: the method, its settings and seed, validated with the field named.

The section sits in every strategy's recipe YAML (tuning/recipes/*.yaml), which lists its knobs
with their defaults; `method: none` (the default) leaves the training data as it was.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from harness.errors import DomainbenchError

NONE = "none"
READING_COMPREHENSION = "reading-comprehension"
PERTURB = "perturb"
SYNTHETIC_QA = "synthetic-qa"
AUGMENTATIONS = (NONE, READING_COMPREHENSION, PERTURB, SYNTHETIC_QA)
PERTURB_OPERATIONS = ("swap", "delete", "insert")
# The mixture source each method writes: reading comprehension rewrites corpus text (cpt); the
# others add supervised examples (sft), so a recipe without that source would augment nothing.
_SOURCE = {READING_COMPREHENSION: "cpt", PERTURB: "sft", SYNTHETIC_QA: "sft"}
_SECTION = {READING_COMPREHENSION: "reading_comprehension", PERTURB: "perturb", SYNTHETIC_QA: "synthetic_qa"}


@dataclass(frozen=True)
class ReadingSettings:
    per_kind: int                 # exercises of each kind (inference, cause, paraphrase…) per text at most


@dataclass(frozen=True)
class PerturbSettings:
    rate: float                   # EDA's alpha: the share of a prompt's words each operation changes
    copies: int                   # perturbed copies of each example, beside the original
    operations: tuple[str, ...]


@dataclass(frozen=True)
class SyntheticQASettings:
    passages: int                 # train-split passages the generator reads
    passage_chars: int            # a passage's length at most
    pairs_per_passage: int
    max_new_tokens: int
    question_words: tuple[int, int]
    answer_words: tuple[int, int]


@dataclass(frozen=True)
class AugmentConfig:
    method: str
    seed: int
    overlap_words: int            # a run of this many words shared with a test text drops a generated piece
    reading_comprehension: ReadingSettings
    perturb: PerturbSettings
    synthetic_qa: SyntheticQASettings

    @property
    def active(self) -> bool:
        return self.method != NONE

    @property
    def reads_corpus(self) -> bool:
        """Whether the method reads the suite's corpus (perturb reads the tasks' examples only)."""
        return self.method in (READING_COMPREHENSION, SYNTHETIC_QA)

    def settings(self) -> dict:
        """The chosen method's own settings (empty for `none`)."""
        return asdict(getattr(self, _SECTION[self.method])) if self.active else {}

    def as_dict(self) -> dict:
        return {"method": self.method, "seed": self.seed, "overlap_words": self.overlap_words,
                "settings": self.settings()}


def augmentation_key(config: AugmentConfig, generator_fingerprint: str | None = None) -> dict | None:
    """What an augmented variant adds to a tuned artifact's input hash; None for `none`.

    None keeps the cache keys of plain recipes as they were before augmentation existed. For
    `synthetic-qa` the generator's fingerprint is part of the key: another generator writes
    other pairs.
    """
    if not config.active:
        return None
    key = config.as_dict()
    if config.method == SYNTHETIC_QA:
        if not generator_fingerprint:
            raise ValueError("synthetic-qa: the cache key needs the generator's fingerprint")
        key["generator"] = generator_fingerprint
    return key


def augment_config(section: dict, mixture: dict, *, where: str) -> AugmentConfig:
    """The validated AugmentConfig of a resolved recipe's `augment` mapping (types already checked)."""
    method = section["method"]
    if method not in AUGMENTATIONS:
        raise DomainbenchError(f"{where}: augment.method: {method!r}; expected one of {', '.join(AUGMENTATIONS)}")
    source = _SOURCE.get(method)
    if source is not None and not mixture.get(source):
        raise DomainbenchError(f"{where}: augment.method: {method} augments the {source} source, but "
                               f"data.mixture.{source} is 0")
    _positive(section, "overlap_words", where)
    reading, perturb, qa = section["reading_comprehension"], section["perturb"], section["synthetic_qa"]
    _positive(reading, "per_kind", where, prefix="augment.reading_comprehension.")
    if not 0 < perturb["rate"] <= 1:
        raise DomainbenchError(f"{where}: augment.perturb.rate: {perturb['rate']}; expected a share in (0, 1]")
    _positive(perturb, "copies", where, prefix="augment.perturb.")
    unknown = [op for op in perturb["operations"] if op not in PERTURB_OPERATIONS]
    if unknown or not perturb["operations"]:
        raise DomainbenchError(f"{where}: augment.perturb.operations: {perturb['operations']!r}; expected a "
                               f"non-empty list of {', '.join(PERTURB_OPERATIONS)}")
    for key in ("passages", "passage_chars", "pairs_per_passage", "max_new_tokens"):
        _positive(qa, key, where, prefix="augment.synthetic_qa.")
    return AugmentConfig(
        method=method, seed=section["seed"], overlap_words=section["overlap_words"],
        reading_comprehension=ReadingSettings(per_kind=reading["per_kind"]),
        perturb=PerturbSettings(rate=perturb["rate"], copies=perturb["copies"],
                                operations=tuple(perturb["operations"])),
        synthetic_qa=SyntheticQASettings(
            passages=qa["passages"], passage_chars=qa["passage_chars"], pairs_per_passage=qa["pairs_per_passage"],
            max_new_tokens=qa["max_new_tokens"],
            question_words=_word_range(qa, "question_words", where),
            answer_words=_word_range(qa, "answer_words", where)))


def _positive(section: dict, key: str, where: str, *, prefix: str = "augment.") -> None:
    if section[key] < 1:
        raise DomainbenchError(f"{where}: {prefix}{key}: expected a positive number, got {section[key]}")


def _word_range(section: dict, key: str, where: str) -> tuple[int, int]:
    bounds = section[key]
    if (len(bounds) != 2 or not all(isinstance(b, int) and not isinstance(b, bool) for b in bounds)
            or not 1 <= bounds[0] <= bounds[1]):
        raise DomainbenchError(f"{where}: augment.synthetic_qa.{key}: {bounds!r}; expected [min, max] words, "
                               "1 <= min <= max")
    return bounds[0], bounds[1]
