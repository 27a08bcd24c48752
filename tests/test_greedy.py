"""engines.greedy (the CPU engine's own decoding) and engines.cpu_attention (its one-query attention)."""

from __future__ import annotations

import copy

import pytest
import torch

from engines.cpu_attention import NAME, attention, use_decode_attention
from engines.cpu_linear import PackedLinears
from engines.greedy import ReservedLayer, can_decode, greedy_generate
from engines.hf import HFEngine
from engines.stops import cut_at_stop
from harness.models import cpu_has_native_bf16
from harness.requests import GenerationRequest

PROMPTS = [
    "The open() system call opens the file specified by pathname. If the specified file does not exist,",
    "Question: Which header declares openat()? Answer:",
    "Paris",
    "On error, -1 is returned and errno is set to indicate the error: EACCES, EEXIST, ENOENT, EINVAL.",
    "Summary:",
]


def _engines(model, tokenizer, **kwargs):
    own = HFEngine(model, tokenizer, device="cpu", progress=False, **kwargs)
    hf = HFEngine(model, tokenizer, device="cpu", progress=False, **kwargs)
    hf._decodes_itself = False  # transformers' generate over a left-padded batch: the reference
    assert own._uses_own_decoding()
    return own, hf


@pytest.mark.parametrize("prefill_tokens", [16, 64, 1024])  # alone, in small groups, all together
def test_own_decoding_gives_generates_greedy_texts(tiny_model, tiny_tokenizer, prefill_tokens):
    own, hf = _engines(tiny_model, tiny_tokenizer, max_batch_tokens=prefill_tokens)
    requests = [GenerationRequest(p, stop=("\n",), max_new_tokens=10) for p in PROMPTS]
    requests += [GenerationRequest(p, stop=(), max_new_tokens=6) for p in PROMPTS[:2]]
    assert own.generate(requests) == hf.generate(requests)


def test_rows_that_finish_leave_the_batch_without_changing_the_others(tiny_model, tiny_tokenizer):
    prompts = [tiny_tokenizer(p)["input_ids"] for p in PROMPTS]
    free = greedy_generate(tiny_model, prompts, max_new_tokens=8, finished=lambda tokens: False)
    # Row 0 stops after its first token, row 2 after three; the others must not notice.
    stops = {0: 1, 2: 3}
    for row, n in stops.items():  # the rule names these rows by their prefixes: no other row shares them
        assert sum(tokens[:n] == free[row][:n] for tokens in free) == 1
    stopped = greedy_generate(tiny_model, prompts, max_new_tokens=8,
                              finished=lambda tokens: any(tokens == free[row][:n] for row, n in stops.items()))
    for row, tokens in enumerate(stopped):
        assert tokens == free[row][:stops.get(row, 8)]


@pytest.mark.parametrize("decoding", ["own", "generate"])
def test_each_request_hears_its_tokens_and_they_spell_its_answer(tiny_model, tiny_tokenizer, decoding):
    own, hf = _engines(tiny_model, tiny_tokenizer, max_batch_tokens=64)
    engine = own if decoding == "own" else hf
    requests = [GenerationRequest(p, stop=("\n",), max_new_tokens=10) for p in PROMPTS]
    requests += [GenerationRequest(p, stop=(), max_new_tokens=6) for p in PROMPTS[:2]]
    heard: dict[int, list[int]] = {}
    forwards, forwards_at_first_token = [0], []

    def hear(index: int, token: int) -> None:
        forwards_at_first_token.extend([] if heard else [forwards[0]])
        heard.setdefault(index, []).append(token)

    counting = tiny_model.register_forward_pre_hook(lambda *_: forwards.__setitem__(0, forwards[0] + 1))
    try:
        answers = engine.generate(requests, on_token=hear)
    finally:
        counting.remove()
    assert forwards_at_first_token == [1]  # heard as soon as the first forward chose it, not when all are done
    assert sorted(heard) == list(range(len(requests)))
    for index, request in enumerate(requests):
        text = tiny_tokenizer.decode(heard[index], skip_special_tokens=True)
        assert cut_at_stop(text, request.stop) == answers[index]
        assert len(heard[index]) <= request.max_new_tokens


def test_a_reserved_cache_layer_holds_what_concatenation_would_and_grows_past_its_room():
    prompt_keys, prompt_values = torch.randn(2, 3, 5, 4), torch.randn(2, 3, 5, 4)
    layer = ReservedLayer(torch.nn.functional.pad(prompt_keys, (0, 0, 0, 2)),
                          torch.nn.functional.pad(prompt_values, (0, 0, 0, 2)), length=5)
    steps = [(torch.randn(2, 3, 1, 4), torch.randn(2, 3, 1, 4)) for _ in range(4)]  # 2 past the room
    for keys, values in steps:
        assert layer.get_mask_sizes(1)[0] >= layer.get_seq_length() + 1
        layer.update(keys, values)
    assert layer.get_seq_length() == 9
    assert torch.equal(layer.keys[:, :, :9], torch.cat([prompt_keys, *(k for k, _ in steps)], dim=-2))
    assert torch.equal(layer.values[:, :, :9], torch.cat([prompt_values, *(v for _, v in steps)], dim=-2))


def test_models_whose_generate_changes_the_logits_keep_generate(tiny_model):
    assert can_decode(tiny_model)
    penalised = copy.deepcopy(tiny_model)
    penalised.generation_config.repetition_penalty = 1.3
    assert not can_decode(penalised)


def test_prompt_learning_adapters_keep_generate(tiny_model):
    from peft import PromptTuningConfig, get_peft_model

    wrapped = get_peft_model(copy.deepcopy(tiny_model), PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=2))
    assert not can_decode(wrapped)


def _reference_attention(query, key, value, mask):
    groups = query.shape[1] // key.shape[1]
    key, value = (t.double().repeat_interleave(groups, dim=1) for t in (key, value))
    scores = query.double() @ key.transpose(-1, -2) / query.shape[-1] ** 0.5
    scores = scores.masked_fill(~mask, float("-inf"))
    return (torch.softmax(scores, -1) @ value).transpose(1, 2)


def test_one_query_attention_matches_a_float64_reference_under_a_padding_mask():
    generator = torch.Generator().manual_seed(0)
    query, key, value = (torch.randn(shape, generator=generator)
                         for shape in ((3, 6, 1, 16), (3, 2, 9, 16), (3, 2, 9, 16)))
    mask = torch.ones((3, 1, 1, 9), dtype=torch.bool)
    mask[0, ..., :4] = False  # left padding of a shorter row
    mask[2, ..., :8] = False
    module = torch.nn.Module()
    module.num_key_value_groups, module.is_causal = 3, True
    expected = _reference_attention(query, key, value, mask)
    got, _ = attention(module, query.bfloat16(), key.bfloat16(), value.bfloat16(), mask)
    assert got.shape == expected.shape
    assert torch.allclose(got.double(), expected, atol=3e-2)
    full, _ = attention(module, query, key, value, mask)  # fp32: SDPA itself
    assert torch.allclose(full.double(), expected, atol=1e-5)


def test_a_bf16_cpu_model_decodes_with_it_and_stays_close_to_sdpa(tiny_model, tiny_tokenizer):
    model = copy.deepcopy(tiny_model).to(torch.bfloat16)
    prompts = [tiny_tokenizer(p)["input_ids"] for p in PROMPTS]

    def decode():
        return greedy_generate(model, prompts, max_new_tokens=4, finished=lambda tokens: False)

    sdpa = decode()
    assert use_decode_attention(model) and model.config._attn_implementation == NAME
    assert not use_decode_attention(copy.deepcopy(tiny_model))  # fp32 keeps SDPA
    ours = decode()
    agree = sum(a == b for row_a, row_b in zip(sdpa, ours) for a, b in zip(row_a, row_b))
    assert agree >= 0.8 * sum(map(len, sdpa))  # bf16: a near-tie may flip, most tokens must not


needs_native_bf16 = pytest.mark.skipif(not cpu_has_native_bf16(), reason="oneDNN packs bf16 weights where the CPU "
                                                                          "computes bf16 natively")


@needs_native_bf16
def test_packed_linear_weights_compute_bitwise_what_plain_ones_do(tiny_model, tiny_tokenizer):
    model = copy.deepcopy(tiny_model).to(torch.bfloat16).eval()
    ids = torch.tensor([tiny_tokenizer(PROMPTS[0])["input_ids"]])
    packed = PackedLinears()
    with torch.inference_mode():
        plain = model(input_ids=ids).logits
        with packed.applied(model) as used:
            assert used and all("forward" in vars(m) for m in model.modules() if type(m) is torch.nn.Linear)
            assert torch.equal(model(input_ids=ids).logits, plain)
    assert not any("forward" in vars(m) for m in model.modules())  # the class's forward is back
    before = dict(packed._packed)
    with torch.inference_mode(), packed.applied(model):  # kept across calls ...
        pass
    assert all(packed._packed[layer][1] is weight for layer, (_, weight) in before.items())
    layer = model.model.layers[0].mlp.down_proj
    with torch.no_grad():
        layer.weight.mul_(2)
    with torch.inference_mode():
        changed = model(input_ids=ids).logits
        with packed.applied(model):  # ... and packed again once a weight changes
            assert packed._packed[layer][1] is not before[layer][1]
            assert torch.equal(model(input_ids=ids).logits, changed)


@needs_native_bf16
def test_a_bf16_engine_decodes_the_same_tokens_with_packed_weights(tiny_model, tiny_tokenizer):
    import contextlib

    model = copy.deepcopy(tiny_model).to(torch.bfloat16).eval()
    requests = [GenerationRequest(p, stop=("\n",), max_new_tokens=8) for p in PROMPTS]
    packed = HFEngine(model, tiny_tokenizer, device="cpu", progress=False)
    plain = HFEngine(model, tiny_tokenizer, device="cpu", progress=False)
    plain._packed_linears.applied = lambda model: contextlib.nullcontext(False)
    assert packed.generate(requests) == plain.generate(requests)
    assert packed._packed_linears._packed  # it did pack
    assert not PackedLinears()._packed and not _packs(copy.deepcopy(tiny_model))  # fp32 is left alone


def _packs(model) -> bool:
    with PackedLinears().applied(model) as used:
        return used
