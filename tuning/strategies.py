"""One entry point for every tuning strategy: recipe in, artifact dir out (cached by input hash)."""

from __future__ import annotations

from pathlib import Path

from tuning.recipe import load_recipe


def tune(strategy: str, model_spec: str, suite, *, config: Path | None = None, profile: str | None = None,
         output: Path | None = None, resume: bool = False) -> Path:
    """Validate the recipe, then run the strategy's module on a loaded Suite; returns the artifact dir."""
    recipe = load_recipe(strategy, config=config, profile=profile)
    if strategy == "full":
        from tuning.full import tune_full as run
    elif strategy == "distill":
        from tuning.distill import tune_distill as run
    else:
        from tuning.peft_adapters import tune_adapter as run
    return run(model_spec, suite, recipe, output=output, resume=resume)
