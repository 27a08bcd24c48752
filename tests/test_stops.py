"""engines.stops: where an answer ends, and the same answer released piece by piece while it is decoded."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from engines.stops import StreamedAnswer, cut_at_stop

ALPHABET = "ab .:\n\té€"


def _stream(tokenizer, text: str, stops: tuple[str, ...]) -> tuple[list[str], str, str]:
    """(pieces released token by token, the rest `finish` releases, the unstreamed answer).

    Decoding stops at the first token after which a stop string cuts the text, as every engine's does.
    """
    tokens = tokenizer(text, add_special_tokens=False)["input_ids"]
    stream = StreamedAnswer(tokenizer, stops)
    pieces = []
    for end, token in enumerate(tokens, 1):
        pieces.append(stream.add(token))
        decoded = tokenizer.decode(tokens[:end], skip_special_tokens=True)
        if cut_at_stop(decoded, stops) != decoded:
            break
    answer = cut_at_stop(decoded, stops) if tokens else ""
    return pieces, stream.finish(answer), answer


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=ALPHABET, max_size=40),
       stops=st.lists(st.text(alphabet=ALPHABET, min_size=1, max_size=3), max_size=2).map(tuple))
def test_pieces_never_run_ahead_of_the_answer_and_join_into_it(tiny_tokenizer, text, stops):
    pieces, rest, answer = _stream(tiny_tokenizer, text, stops)
    released = "".join(pieces)
    assert answer.startswith(released)
    assert released + rest == answer


def test_a_stop_string_is_held_back_while_it_may_still_be_completed(tiny_tokenizer):
    pieces, rest, answer = _stream(tiny_tokenizer, "Hello\n\nWorld", ("\n\n",))
    assert answer == "Hello" and "".join(pieces) == "Hello" and rest == ""
    assert not any("\n" in piece for piece in pieces)
    # A newline that turns out not to begin the stop string is released with what follows it.
    pieces, rest, answer = _stream(tiny_tokenizer, "Hello\nWorld", ("\n\n",))
    assert "".join(pieces) + rest == "Hello\nWorld"


def test_leading_whitespace_is_released_before_the_answer_begins(tiny_tokenizer):
    """Stop strings apply once the answer has begun (cut_at_stop), so a leading newline is final at once."""
    stream = StreamedAnswer(tiny_tokenizer, ("\n",))
    newline = tiny_tokenizer("\n", add_special_tokens=False)["input_ids"]
    assert "".join(stream.add(token) for token in newline) == "\n"


def test_a_character_split_across_tokens_is_released_whole(tiny_tokenizer):
    tokens = tiny_tokenizer("€", add_special_tokens=False)["input_ids"]
    assert len(tokens) > 1  # the tiny byte-level vocabulary has no token for it
    stream = StreamedAnswer(tiny_tokenizer, ())
    pieces = [stream.add(token) for token in tokens]
    assert pieces[:-1] == [""] * (len(tokens) - 1) and pieces[-1] == "€"
