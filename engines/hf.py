"""The engine: batched log-likelihood, rolling log-likelihood and greedy generation.

The only place that knows about devices, dtypes, padding and batching. Three request types, as in
lm-evaluation-harness; results come back in request order whatever the internal batching.

How scoring stays fast and batch-independent:
- every scored sequence is left-padded, so all rows of a batch end at the same position and the
  scored tokens of every row sit in the last K positions;
- explicit position ids (counted from the first real token) make a padded row compute exactly
  what the unpadded row would;
- the output projection over the vocabulary is applied only to the scored positions, in row
  chunks (on a CPU also in vocabulary slices, engines/scoring.py), so [batch, length, vocab]
  logits are never materialised;
- batches are sized by tokens (rows x longest row), longest first, so memory stays flat;
- the continuations of one context (a multiple-choice example's labels) share a row and the
  context is computed once (engines/shared_context.py).

Generation on a CPU runs engines/greedy.py (prompts prefilled without padding where they are long,
finished rows leaving the batch) with bf16 decoding steps through engines/cpu_attention.py and
linear layers on weights prepacked for oneDNN (engines/cpu_linear.py); on a GPU, and for models
that need it, transformers' `generate`.
"""

from __future__ import annotations

import torch

from engines.cpu_attention import use_decode_attention
from engines.cpu_linear import PackedLinears
from engines.distributed import gather_indexed, rank_and_world
from engines.greedy import (
    TokenStreamer,
    can_decode,
    eos_token_ids,
    greedy_generate,
    stop_rule,
)
from engines.registry import EngineOptions
from engines.scoring import (
    ScoringRow,
    TokenizedRequests,
    head_logprobs,
    head_reproduces_forward,
    left_padded,
    logprobs_from_logits,
    rolling_windows,
)
from engines.shared_context import SharedContextRow, batch_inputs, shared_context_rows
from engines.stops import StopAfterAnswerBegins, cut_at_stop
from engines.tokens import prefix_token_id
from harness.models import LoadedModel, default_device, load_model, with_adapter
from harness.progress import counting_bar
from harness.requests import (
    GenerationRequest,
    Loglikelihood,
    LoglikelihoodRequest,
    RollingRequest,
    TokenCallback,
)

DEFAULT_MAX_LENGTH = 2048


class HFEngine(TokenizedRequests):
    """Runs the three request types on one model and tokenizer."""

    fingerprint: str | None = None  # set by the registry's opener, which knows the source

    def __init__(self, model, tokenizer, *, device: str | None = None, max_length: int | None = None,
                 max_batch_tokens: int | None = None, max_generation_batch: int | None = None,
                 static_cache: bool = False, share_contexts: bool = True, progress: bool = True):
        self.device = torch.device(device or _model_device(model) or default_device())
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length or _model_max_length(model)
        on_gpu = self.device.type == "cuda"
        # A batch always takes its first row, however long. On a CPU, batching long rows buys no
        # parallelism (2 cores are busy with one) and costs padding and a masked attention:
        # perplexity of 10 man pages, fp32, 25.9 s at 4,096 tokens per batch, 20.7 s at 1,024.
        self.max_batch_tokens = max_batch_tokens or (65536 if on_gpu else 1024)
        # Generation reads the weights once per step, so it batches wide (on a CPU prefill stays in
        # max_batch_tokens groups): 48 NER prompts x 32 tokens, SmolLM2-135M bf16, 2-core AVX-512
        # BF16: 14.3-15.6 s in batches of 16, 11.4-13.2 s in one batch of 48.
        self.generation_batch_tokens = max(self.max_batch_tokens, 65536 if on_gpu else 32768)
        self.max_generation_batch = max_generation_batch or 64
        self.static_cache = static_cache
        self.share_contexts = share_contexts
        self.progress = progress
        self.prefix_token_id = prefix_token_id(tokenizer)
        self.rank, self.world = rank_and_world()
        if self.device.type == "cpu":
            use_decode_attention(model)  # bf16 decoding steps without torch's slow one-query CPU kernel
        self._head_only_scoring: bool | None = None
        self._decodes_itself: bool | None = None
        self._packed_linears = PackedLinears()  # bf16 weights laid out for oneDNN while decoding (cpu_linear.py)
        # Tokens through the model (scored inputs, prompts, generated tokens): what tokens/s counts.
        self.tokens_processed = 0

    @classmethod
    def from_loaded(cls, loaded: LoadedModel, **kwargs) -> "HFEngine":
        return cls(loaded.model, loaded.tokenizer, **kwargs)

    def close(self) -> None:
        """Nothing to stop: the model is freed with the last reference to it."""

    @property
    def dtype(self) -> str:
        """The dtype the weights compute in (`bfloat16`, `float32`, …), as result files record it."""
        return str(next(self.model.parameters()).dtype).removeprefix("torch.")

    # ----- request API -------------------------------------------------------------------------

    def loglikelihood(self, requests: list[LoglikelihoodRequest]) -> list[Loglikelihood]:
        """Log-probability of each continuation given its context.

        Requests that share a context (the labels of one multiple-choice example) are scored in one
        row with the context computed once (engines.shared_context), where the model allows it.
        """
        if not requests:
            return []
        contexts, continuations = self._encode_pairs(requests)
        shared, alone = [], list(range(len(requests)))
        if self.share_contexts and self._uses_head_only_scoring():
            shared, alone = shared_context_rows([[self.prefix_token_id, *c] for c in contexts], continuations,
                                                self.max_length)
        results: list[Loglikelihood | None] = [None] * len(requests)
        rows = [self._continuation_row(contexts[i], continuations[i]) for i in alone]
        for index, result in zip(alone, self._score(rows, description="loglikelihood")):
            results[index] = result
        for row, scores in zip(shared, self._score_shared(shared)):
            for index, result in zip(row.members, scores):
                results[index] = result
        return results

    def loglikelihood_rolling(self, requests: list[RollingRequest], *, stride: int | None = None) -> list[Loglikelihood]:
        """Log-probability of each whole text, every token scored exactly once.

        `is_greedy` is not computed for rolling requests (always False): perplexity never needs
        it, and the argmax over the vocabulary at every position costs a third of the scoring.

        Texts longer than the context are cut into windows of `max_length` tokens that advance by
        `stride` (default: `max_length`, lm-evaluation-harness's disjoint windows); each window
        scores only the tokens no earlier window scored, with the rest as context.
        """
        stride = stride or self.max_length
        if not 0 < stride <= self.max_length:
            raise ValueError(f"stride must be in 1..{self.max_length}, got {stride}")
        token_lists = self._encode([r.text for r in requests])
        rows, owners = [], []
        for owner, tokens in enumerate(token_lists):
            for row in rolling_windows(tokens, self.prefix_token_id, self.max_length, stride):
                rows.append(row)
                owners.append(owner)
        window_scores = self._score(rows, description="perplexity", greedy=False)
        totals = [[0.0, True, 0] for _ in requests]
        for owner, score in zip(owners, window_scores):
            totals[owner][0] += score.logprob
            totals[owner][1] &= score.is_greedy
            totals[owner][2] += score.n_tokens
        return [Loglikelihood(logprob, greedy, n) for logprob, greedy, n in totals]

    def generate(self, requests: list[GenerationRequest], *, on_token: TokenCallback | None = None) -> list[str]:
        """Greedy continuations cut at their first stop string; `on_token(request, token)` hears each as decoded."""
        results: list[str | None] = [None] * len(requests)
        prompts = self._encode([r.prompt for r in requests])
        prompts = [self._with_prefix(p) for p in prompts]
        order = sorted(range(len(requests)), key=lambda i: (requests[i].stop, requests[i].max_new_tokens,
                                                           -len(prompts[i])))
        batches = self._generation_batches(self._my_share(order), requests, prompts)
        done = []
        with self._bar("generate", len(requests)) as advance:
            for batch in batches:
                heard = None if on_token is None else (lambda b, token, batch=batch: on_token(batch[b], token))
                texts = self._generate_batch([prompts[i] for i in batch], requests[batch[0]], heard)
                done.extend(zip(batch, texts))
                advance(len(batch) * self.world)
        for index, text in gather_indexed(done, self.world):
            results[index] = text
        return results

    # ----- scoring -----------------------------------------------------------------------------

    def _score(self, rows: list[ScoringRow], *, description: str, greedy: bool = True) -> list[Loglikelihood]:
        results: list[Loglikelihood | None] = [None] * len(rows)
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i].tokens))
        done = []
        with self._bar(description, len(rows)) as advance:
            for batch in self._token_batches(self._my_share(order), [len(r.tokens) - 1 for r in rows]):
                done.extend(zip(batch, self._score_batch([rows[i] for i in batch], greedy)))
                advance(len(batch) * self.world)
        for index, result in gather_indexed(done, self.world):
            results[index] = result
        return results

    def _score_shared(self, rows: list[SharedContextRow]) -> list[list[Loglikelihood]]:
        """Each row's continuations scored, batched by tokens like `_score`, sharded under torchrun."""
        results: list[list[Loglikelihood] | None] = [None] * len(rows)
        order = sorted(range(len(rows)), key=lambda i: -rows[i].length)
        done = []
        with self._bar("loglikelihood (shared contexts)", len(rows)) as advance:
            for batch in self._token_batches(self._my_share(order), [row.length for row in rows]):
                done.extend(zip(batch, self._score_shared_batch([rows[i] for i in batch])))
                advance(len(batch) * self.world)
        for index, result in gather_indexed(done, self.world):
            results[index] = result
        return results

    @torch.inference_mode()
    def _score_shared_batch(self, rows: list[SharedContextRow]) -> list[list[Loglikelihood]]:
        dtype = next(self.model.parameters()).dtype
        input_ids, position_ids, mask = batch_inputs(rows, self._pad_id, dtype, self.device)
        self.tokens_processed += sum(row.length for row in rows)
        hidden = self.model.get_decoder()(input_ids=input_ids, attention_mask=mask,
                                          position_ids=position_ids).last_hidden_state
        width = input_ids.shape[1]
        picks = [(b, member, width - row.length + position, token)
                 for b, row in enumerate(rows) for member, position, token in row.scored()]
        logprobs, is_argmax = [], []
        if picks:
            batch_index, _, columns, targets = (torch.tensor(column, device=self.device) for column in zip(*picks))
            token_logprobs, token_greedy = head_logprobs(hidden[batch_index, columns], self._head, targets, True)
            logprobs, is_argmax = token_logprobs.double().tolist(), token_greedy.tolist()
        sums = [[0.0] * len(row.members) for row in rows]
        greedy = [[True] * len(row.members) for row in rows]
        for (b, member, _, _), logprob, argmax in zip(picks, logprobs, is_argmax):
            sums[b][member] += logprob
            greedy[b][member] = greedy[b][member] and argmax
        return [[Loglikelihood(sums[b][m], greedy[b][m], len(row.continuations[m])) for m in range(len(row.members))]
                for b, row in enumerate(rows)]

    def _my_share(self, order: list[int]) -> list[int]:
        """This rank's requests under torchrun: every world-th one of the length-sorted order."""
        return order[self.rank::self.world]

    def _token_batches(self, order: list[int], lengths: list[int], *, budget: int | None = None,
                       max_rows: int | None = None):
        """Consecutive runs of `order` whose padded size (rows x longest) fits the token budget."""
        budget = budget or self.max_batch_tokens
        batch: list[int] = []
        longest = 0
        for index in order:
            candidate = max(longest, lengths[index])
            full = max_rows is not None and len(batch) >= max_rows
            if batch and (candidate * (len(batch) + 1) > budget or full):
                yield batch
                batch, candidate = [], lengths[index]
            batch.append(index)
            longest = candidate
        if batch:
            yield batch

    @torch.inference_mode()
    def _score_batch(self, rows: list[ScoringRow], greedy: bool) -> list[Loglikelihood]:
        inputs = [list(r.tokens[:-1]) for r in rows]
        input_ids, attention_mask, position_ids = self._left_padded(inputs)
        self.tokens_processed += sum(map(len, inputs))
        n_keep = max(r.n_scored for r in rows)
        # targets[i, j] is the id predicted at the j-th of the last n_keep positions of row i.
        targets = torch.full((len(rows), n_keep), -1, dtype=torch.long)
        for i, row in enumerate(rows):
            if row.n_scored:
                targets[i, n_keep - row.n_scored:] = torch.tensor(row.tokens[-row.n_scored:])
        targets = targets.to(self.device)
        scored = targets >= 0
        token_logprobs, token_greedy = self._target_logprobs(input_ids, attention_mask, position_ids,
                                                             n_keep, scored, targets[scored], greedy)
        row_of_token = scored.nonzero()[:, 0]
        logprob = torch.zeros(len(rows), dtype=torch.float64, device=self.device)
        logprob.index_add_(0, row_of_token, token_logprobs.double())
        misses = torch.zeros(len(rows), dtype=torch.long, device=self.device)
        misses.index_add_(0, row_of_token, (~token_greedy).long())
        return [Loglikelihood(float(lp), bool(m == 0), r.n_scored)
                for lp, m, r in zip(logprob.tolist(), misses.tolist(), rows)]

    def _target_logprobs(self, input_ids, attention_mask, position_ids, n_keep, scored, targets, greedy):
        """Log-prob and greedy flag of each target id at the scored positions (flattened)."""
        if n_keep == 0:
            empty = torch.empty(0, device=self.device)
            return empty, empty.bool()
        if self._uses_head_only_scoring():
            # Rows without padding need no mask: attention takes the causal kernel, which on a CPU
            # is ~1.6x faster than the same attention with a mask (torch 2.13 SDPA, 900 tokens).
            mask = None if bool(attention_mask.all()) else attention_mask
            hidden = self.model.get_decoder()(input_ids=input_ids, attention_mask=mask,
                                              position_ids=position_ids).last_hidden_state
            hidden = hidden[:, -n_keep:][scored]
            return head_logprobs(hidden, self._head, targets, greedy)
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                            logits_to_keep=n_keep).logits
        return logprobs_from_logits(logits[scored].float(), targets, greedy)

    @property
    def _head(self):
        return self.model.get_output_embeddings()

    def _uses_head_only_scoring(self) -> bool:
        """Whether decoder + output projection reproduce the model's own logits (engines/scoring.py), checked once."""
        if self._head_only_scoring is None:
            probe = [self.prefix_token_id, *self._encode(["The engine checks this."])[0]]
            self._head_only_scoring = head_reproduces_forward(self.model, probe, self.device)
        return self._head_only_scoring

    @property
    def _pad_id(self) -> int:
        return self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.prefix_token_id

    def _left_padded(self, sequences: list[list[int]]):
        return left_padded(sequences, self._pad_id, self.device)

    # ----- generation --------------------------------------------------------------------------

    def _generation_batches(self, order, requests, prompts):
        """Batches of requests sharing stop strings and budget, sized by tokens and rows."""
        groups: dict[tuple, list[int]] = {}
        for index in order:
            groups.setdefault((requests[index].stop, requests[index].max_new_tokens), []).append(index)
        batches = []
        for (_, max_new), members in groups.items():
            lengths = [0] * len(prompts)
            for index in members:
                lengths[index] = len(prompts[index]) + max_new
            batches.extend(self._token_batches(members, lengths, budget=self.generation_batch_tokens,
                                               max_rows=self.max_generation_batch))
        return batches

    @torch.inference_mode()
    def _generate_batch(self, prompts: list[list[int]], request: GenerationRequest,
                        on_token: TokenCallback | None) -> list[str]:
        budget = self.max_length - request.max_new_tokens
        prompts = [p[-budget:] if budget > 0 else p[-1:] for p in prompts]
        if self._uses_own_decoding():
            return self._decode_batch(prompts, request, on_token)
        input_ids, attention_mask, _ = self._left_padded(prompts)
        options = dict(max_new_tokens=request.max_new_tokens, do_sample=False, num_beams=1,
                       pad_token_id=self.tokenizer.pad_token_id, temperature=None, top_p=None, top_k=None)
        if request.stop:
            options["stopping_criteria"] = [StopAfterAnswerBegins(request.stop, self.tokenizer, input_ids.shape[1])]
        if self.static_cache:
            options["cache_implementation"] = "static"
        if on_token is not None:
            options["streamer"] = TokenStreamer(on_token)
        output = self.model.generate(input_ids=input_ids, attention_mask=attention_mask, **options)
        new_tokens = output[:, input_ids.shape[1]:]
        self.tokens_processed += int(attention_mask.sum()) + int((new_tokens != self.tokenizer.pad_token_id).sum())
        return self._answers(new_tokens, request)

    def _uses_own_decoding(self) -> bool:
        """Whether generation takes engines.greedy (a CPU, a plain causal LM) rather than `generate`.

        On a GPU a padded batch prefill is what keeps the device busy, and a static cache asks for
        `generate`'s compiled path.
        """
        if self._decodes_itself is None:
            self._decodes_itself = self.device.type == "cpu" and not self.static_cache and can_decode(self.model)
        return self._decodes_itself

    def _decode_batch(self, prompts: list[list[int]], request: GenerationRequest,
                      on_token: TokenCallback | None) -> list[str]:
        finished = stop_rule(self.tokenizer, request.stop, eos_token_ids(self.model, self.tokenizer))
        with self._packed_linears.applied(self.model):
            new_tokens = greedy_generate(self.model, prompts, max_new_tokens=request.max_new_tokens,
                                         finished=finished, prefill_tokens=self.max_batch_tokens, on_token=on_token)
        self.tokens_processed += sum(map(len, prompts)) + sum(map(len, new_tokens))
        return self._answers(new_tokens, request)

    def _answers(self, new_tokens, request: GenerationRequest) -> list[str]:
        texts = self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        return [cut_at_stop(text, request.stop) for text in texts]

    def _bar(self, description: str, total: int):
        return counting_bar(description, total, enabled=self.progress and total > 0 and self.rank == 0)


def _model_device(model) -> str | None:
    try:
        return str(next(model.parameters()).device)
    except (StopIteration, AttributeError):
        return None


def _model_max_length(model) -> int:
    positions = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    return min(positions or DEFAULT_MAX_LENGTH, DEFAULT_MAX_LENGTH)


def open_hf(spec: str, options: EngineOptions) -> HFEngine:
    """The registry's opener for everything `resolve_model` knows: a builtin name, a model dir, a hub id."""
    loaded = load_model(spec, device=options.device, dtype=options.dtype, trust_remote_code=options.trust_remote_code)
    model = with_adapter(loaded.model, options.adapter) if options.adapter else loaded.model
    engine = HFEngine(model, loaded.tokenizer, max_batch_tokens=options.max_batch_tokens, progress=options.progress)
    engine.fingerprint = loaded.fingerprint
    return engine
