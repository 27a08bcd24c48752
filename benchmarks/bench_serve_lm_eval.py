"""lm-evaluation-harness through `domainbench serve` against lm-eval's own HF model, on the builtin model.

100 requests: the man-pages section task's five-way multiple choice on 16 test examples (80
log-likelihoods) and rolling log-likelihood of the 20 shortest test pages. lm-eval's
`local-completions` (its defaults: token-id prompts, batch 1) talks to `serve --model
smollm2-135m-instruct --dtype float32`; the baseline is lm-eval's HFLM at fp32, batch 1, with its
rolling windows the size of the API model's (2046 tokens). Prints how many requests agree to 1e-4
(or 1e-6 relative, for long sums) and the largest difference. Needs the `test` extra; run
`pytest benchmarks/bench_serve_lm_eval.py -s`.
"""

from __future__ import annotations

import pytest

from tasks.suite import load_suite
from tests.servers import start_serve, stop_serve

lm_eval = pytest.importorskip("lm_eval", reason="the `test` extra (lm-evaluation-harness) is not installed")

MODEL = "smollm2-135m-instruct"
CHOICE_EXAMPLES = 16
PAGES = 20
CONTEXT = 2048  # the engine's context for the builtin model
AGREEMENT = 1e-4
# A rolling page's log-likelihood sums up to thousands of tokens over 2046-token windows: float32 kernels
# differ by more there (measured: at most 8.8e-7 of the sum, 1.2e-4 nats, on 2026-12-03).
RELATIVE_AGREEMENT = 1e-6


def _instances(kind: str, arguments: list[tuple]) -> list:
    from lm_eval.api.instance import Instance

    return [Instance(request_type=kind, doc={}, arguments=args, idx=i) for i, args in enumerate(arguments)]


def test_lm_eval_through_serve_agrees_with_lm_evals_hf_model():
    from lm_eval.models.huggingface import HFLM
    from lm_eval.models.openai_completions import LocalCompletionsAPI

    from harness.models import resolve_model

    tasks = {task.name: task for task in load_suite("manpages").tasks}
    section = tasks["section"]
    pairs = [(f"Manual page excerpt:\n{example['text']}\nThis page documents a", label)
             for example in section.examples["test"][:CHOICE_EXAMPLES] for label in section.labels.values()]
    pages = sorted((example["text"] for example in tasks["perplexity"].examples["test"]), key=len)[:PAGES]
    model_dir = str(resolve_model(MODEL))

    process, url = start_serve(["--model", MODEL, "--dtype", "float32"])
    try:
        client = LocalCompletionsAPI(base_url=f"{url}/v1/completions", model=MODEL, tokenizer=model_dir,
                                     tokenizer_backend="huggingface", max_length=CONTEXT)
        served = [lp for lp, _ in client.loglikelihood(_instances("loglikelihood", pairs))]
        served += client.loglikelihood_rolling(_instances("loglikelihood_rolling", [(p,) for p in pages]))
    finally:
        stop_serve(process)
    offline_model = HFLM(pretrained=model_dir, dtype="float32", batch_size=1, device="cpu", max_length=CONTEXT - 2)
    offline = [lp for lp, _ in offline_model.loglikelihood(_instances("loglikelihood", pairs))]
    offline += offline_model.loglikelihood_rolling(_instances("loglikelihood_rolling", [(p,) for p in pages]))

    differences = [abs(s - o) for s, o in zip(served, offline)]
    relative = [d / max(abs(o), 1e-12) for d, o in zip(differences, offline)]
    within = sum(d <= AGREEMENT for d in differences)
    agree = sum(d <= AGREEMENT or r <= RELATIVE_AGREEMENT for d, r in zip(differences, relative))
    print(f"\nlm-eval local-completions through serve vs lm-eval HFLM (fp32), {len(differences)} requests: "
          f"{within} within {AGREEMENT:g} absolute, {agree} within that or {RELATIVE_AGREEMENT:g} relative; "
          f"max |difference| {max(differences):.3g} (multiple choice {max(differences[:len(pairs)]):.3g}, "
          f"rolling {max(differences[len(pairs):]):.3g}), max relative {max(relative):.3g}")
    assert agree == len(differences)
