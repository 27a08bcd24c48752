"""Multiple-choice scoring with the context computed once: one row holds a context and all its continuations.

A classification example asks for the log-likelihood of each label after the same (often long,
few-shot) context. Scored one row per label, the context is computed once per label; here it is
computed once per example. The row is `[prefix, context…, cont₁…, cont₂…, …]` with a custom 4D
attention mask: context tokens attend causally to the context, a continuation's tokens attend to
the whole context and causally to their own continuation, never to another one. Position ids
restart after the context for every continuation, so each continuation sees exactly the positions
it would see alone, and its scores equal the one-row-per-label ones (to floating-point noise).

The first token of every continuation is predicted at the context's last position; each later
token at its predecessor's position.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SharedContextRow:
    """One context and its continuations (request indices in `members`, ids in `continuations`)."""

    context: tuple[int, ...]             # prefix token and context ids
    continuations: tuple[tuple[int, ...], ...]
    members: tuple[int, ...]

    @property
    def length(self) -> int:
        return len(self.context) + sum(len(c) for c in self.continuations)

    def tokens(self) -> list[int]:
        return [*self.context, *(token for continuation in self.continuations for token in continuation)]

    def position_ids(self) -> list[int]:
        start = len(self.context)
        return [*range(start), *(start + j for continuation in self.continuations for j in range(len(continuation)))]

    def allowed(self) -> torch.Tensor:
        """[length, length] booleans: may query position q attend to key position k."""
        n, context = self.length, len(self.context)
        allowed = torch.zeros((n, n), dtype=torch.bool)
        allowed[:, :context] = True
        allowed[:context, :context] = torch.ones((context, context), dtype=torch.bool).tril()
        start = context
        for continuation in self.continuations:
            end = start + len(continuation)
            allowed[start:end, start:end] = torch.ones((end - start, end - start), dtype=torch.bool).tril()
            start = end
        return allowed

    def scored(self) -> list[tuple[int, int, int]]:
        """(member index, position whose output predicts the token, the token id) for every target."""
        targets, start = [], len(self.context)
        for member, continuation in enumerate(self.continuations):
            for j, token in enumerate(continuation):
                targets.append((member, len(self.context) - 1 if j == 0 else start + j - 1, token))
            start += len(continuation)
        return targets


def shared_context_rows(prefixed_contexts: list[list[int]], continuations: list[list[int]],
                        max_length: int) -> tuple[list[SharedContextRow], list[int]]:
    """Requests grouped by identical context into rows that fit `max_length`; the rest returned apart.

    Only contexts with two or more continuations gain anything; a group too long for one row
    (or a lone request) stays with the one-row-per-request path, whose truncation rules apply.
    """
    groups: dict[tuple[int, ...], list[int]] = {}
    for index, context in enumerate(prefixed_contexts):
        groups.setdefault(tuple(context), []).append(index)
    rows, alone = [], []
    for context, members in groups.items():
        row = SharedContextRow(context, tuple(tuple(continuations[i]) for i in members), tuple(members))
        if len(members) > 1 and row.length <= max_length:
            rows.append(row)
        else:
            alone.extend(members)
    return rows, sorted(alone)


def batch_inputs(rows: list[SharedContextRow], pad_id: int, dtype: torch.dtype, device):
    """Left-padded ids, position ids and the additive 4D attention mask of a batch of rows."""
    width = max(row.length for row in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    position_ids = torch.zeros((len(rows), width), dtype=torch.long)
    allowed = torch.zeros((len(rows), 1, width, width), dtype=torch.bool)
    for i, row in enumerate(rows):
        offset = width - row.length
        input_ids[i, offset:] = torch.tensor(row.tokens())
        position_ids[i, offset:] = torch.tensor(row.position_ids())
        allowed[i, 0, offset:, offset:] = row.allowed()
        # Padding queries attend to themselves only: no all-masked row, nothing leaks into real tokens.
        allowed[i, 0, torch.arange(offset), torch.arange(offset)] = True
    mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)
    return input_ids.to(device), position_ids.to(device), mask.to(device)
