"""What an augmentation kept and dropped, with reasons and a few examples: the data card's content.

The report is deterministic for its inputs (no timings), so it can sit in the training data's
summary, which the artifact's input hash covers, and the card can be written again from the
artifact's manifest alone.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

# Examples kept per kind, and per drop reason, for the card: enough to see what the data looks like.
EXAMPLES_PER_GROUP = 2


@dataclass
class AugmentReport:
    method: str
    settings: dict
    read: int = 0                                             # train texts or pairs the augmentation read
    kept: Counter = field(default_factory=Counter)            # kind -> pieces kept
    dropped: Counter = field(default_factory=Counter)         # reason -> pieces dropped
    kept_examples: dict[str, list[str]] = field(default_factory=dict)
    dropped_examples: dict[str, list[str]] = field(default_factory=dict)

    def keep(self, kind: str, text: str) -> None:
        self.kept[kind] += 1
        _sample(self.kept_examples, kind, text)

    def drop(self, reason: str, text: str) -> None:
        self.dropped[reason] += 1
        _sample(self.dropped_examples, reason, text)

    def as_dict(self) -> dict:
        return {"method": self.method, "settings": self.settings, "read": self.read,
                "kept": dict(sorted(self.kept.items())), "dropped": dict(sorted(self.dropped.items())),
                "kept_examples": self.kept_examples, "dropped_examples": self.dropped_examples}

    @classmethod
    def from_dict(cls, record: dict) -> "AugmentReport":
        """The report as `as_dict` wrote it (an artifact manifest's `inputs.data.augment`)."""
        return cls(method=record["method"], settings=record["settings"], read=record["read"],
                   kept=Counter(record["kept"]), dropped=Counter(record["dropped"]),
                   kept_examples=record["kept_examples"], dropped_examples=record["dropped_examples"])


def _sample(groups: dict[str, list[str]], group: str, text: str) -> None:
    examples = groups.setdefault(group, [])
    if len(examples) < EXAMPLES_PER_GROUP:
        examples.append(text)
