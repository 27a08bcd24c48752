"""Run under torchrun: the engine on the tiny model, rank 0 writes the results as JSON."""

import json
import sys

from engines.distributed import init_from_launcher, is_main_process, leave_launcher_group, rank_and_world
from engines.hf import HFEngine
from harness.requests import GenerationRequest, LoglikelihoodRequest, RollingRequest
from harness.tiny import build_tiny_model, build_tiny_tokenizer

TEXTS = ["The open() system call opens the file specified by pathname.", "On error, -1 is returned",
         "Paris is the capital of France.", "EEXIST", "The rename() function renames a file.",
         "Which header declares openat()?", "The quick brown fox jumps over the lazy dog."]


def engine_results(engine: HFEngine) -> dict:
    pairs = [LoglikelihoodRequest(t[:10], t[10:]) for t in TEXTS]
    return {
        "loglikelihood": [[r.logprob, r.is_greedy] for r in engine.loglikelihood(pairs)],
        "rolling": [r.logprob for r in engine.loglikelihood_rolling([RollingRequest(t) for t in TEXTS])],
        "generate": engine.generate([GenerationRequest(t, max_new_tokens=6) for t in TEXTS]),
    }


if __name__ == "__main__":
    init_from_launcher()
    tokenizer = build_tiny_tokenizer()
    results = engine_results(HFEngine(build_tiny_model(tokenizer), tokenizer, device="cpu", progress=False))
    results["world"] = rank_and_world()[1]
    if is_main_process():
        with open(sys.argv[1], "w") as handle:
            json.dump(results, handle)
    leave_launcher_group()
