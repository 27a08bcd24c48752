"""Stop strings for generation: where an answer ends, applied the same way to every configuration."""

from __future__ import annotations

import torch


def cut_at_stop(text: str, stops: tuple[str, ...]) -> str:
    """`text` up to (not including) the earliest stop string after its leading whitespace.

    Stop strings apply once the answer has begun: an instruct model that opens with the newline
    a task uses as its stop would otherwise answer "" every time. The same rule holds for every
    configuration; the leading whitespace is kept (tasks strip predictions).
    """
    begun = len(text) - len(text.lstrip())
    cut = len(text)
    for stop in stops:
        found = text.find(stop, begun)
        if found != -1:
            cut = min(cut, found)
    return text[:cut]


class StopAfterAnswerBegins:
    """A transformers stopping criterion: a row is done once `cut_at_stop` would cut its new text."""

    def __init__(self, stops: tuple[str, ...], tokenizer, prompt_length: int):
        self.stops, self.tokenizer, self.prompt_length = stops, tokenizer, prompt_length

    def __call__(self, input_ids, scores, **kwargs):
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_length:], skip_special_tokens=True)
        return torch.tensor([cut_at_stop(text, self.stops) != text for text in texts], device=input_ids.device)
