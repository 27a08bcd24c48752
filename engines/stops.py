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


class StreamedAnswer:
    """An answer's text released as its tokens arrive, never ahead of what the finished answer says.

    Text is held back while it could still be cut: a tail that begins a stop string (once the answer
    has begun, as `cut_at_stop`), or an incomplete UTF-8 character at the end. `finish` releases the
    rest of the final answer, so the pieces join into exactly the text of an unstreamed request.
    """

    def __init__(self, tokenizer, stops: tuple[str, ...]):
        self.tokenizer, self.stops = tokenizer, stops
        self.tokens: list[int] = []
        self.released = ""
        self.stopped = False

    def add(self, token: int) -> str:
        """The text this token makes final ("" while held back or after a stop string)."""
        self.tokens.append(token)
        if self.stopped:
            return ""
        text = self.tokenizer.decode(self.tokens, skip_special_tokens=True)
        if text.endswith("\ufffd"):  # the rest of a multi-byte character is still to come
            return ""
        cut = cut_at_stop(text, self.stops)
        self.stopped = cut != text
        final = len(cut) if self.stopped else len(text) - _stop_prefix_length(text, self.stops)
        return self._release(text[:final])

    def finish(self, answer: str) -> str:
        """What is left of the finished `answer` to release."""
        piece, self.released = answer[len(self.released):], answer
        return piece

    def _release(self, text: str) -> str:
        if len(text) <= len(self.released) or not text.startswith(self.released):
            return ""
        piece, self.released = text[len(self.released):], text
        return piece


def _stop_prefix_length(text: str, stops: tuple[str, ...]) -> int:
    """Length of the longest tail of `text`, after its leading whitespace, that begins a stop string."""
    begun = len(text) - len(text.lstrip())
    longest = 0
    for stop in stops:
        for length in range(min(len(stop) - 1, len(text) - begun), longest, -1):
            if text.endswith(stop[:length]):
                longest = length
                break
    return longest
