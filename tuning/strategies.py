"""One entry point for every tuning strategy: recipe in, artifact dir out (cached by input hash)."""

from __future__ import annotations

from pathlib import Path

from tuning.augment.synthetic_qa import Generator
from tuning.memory import reset_peak_memory
from tuning.recipe import Recipe, load_recipe


def tune(strategy: str, model_spec: str, suite, *, config: Path | None = None, profile: str | None = None,
         output: Path | None = None, resume: bool = False, teacher: Path | None = None,
         recipe: Recipe | None = None, generator: Generator | None = None) -> Path:
    """Validate the recipe, then run the strategy's module on a loaded Suite; returns the artifact dir.

    `teacher` (distill only) is the finetuned model dir the run evaluates, used when the recipe's
    teacher is `finetuned`, so the student learns from the very teacher it is compared with.
    `recipe`, when given, is the recipe already loaded (a run's variant: its overrides applied) and
    `config` and `profile` are not read; `generator` writes a synthetic-qa augmentation's pairs.
    """
    recipe = recipe or load_recipe(strategy, config=config, profile=profile)
    reset_peak_memory()  # each strategy's peak is its own, even after others in this process
    if strategy == "full":
        from tuning.full import tune_full
        return tune_full(model_spec, suite, recipe, output=output, resume=resume, generator=generator)
    if strategy == "distill":
        from tuning.distill import tune_distill
        return tune_distill(model_spec, suite, recipe, output=output, resume=resume, teacher=teacher,
                            generator=generator)
    from tuning.peft_adapters import tune_adapter
    return tune_adapter(model_spec, suite, recipe, output=output, resume=resume, generator=generator)
