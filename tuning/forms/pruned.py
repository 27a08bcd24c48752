"""`pruned`: whole decoder layers removed by measured importance (tuning/prune.py), a smaller HF model dir.

Pruning measures the layers on the suite's train texts (and heals on its train split), so the
suite and the prune recipe are part of what the form is made from.
"""

from __future__ import annotations

from pathlib import Path

from tuning.forms.base import Form, FormBuild, register_form


def make_pruned(build: FormBuild, directory: Path) -> dict:
    from tuning.prune import calibration_texts, prune_model

    recipe, suite = build.recipe, build.suite
    texts = calibration_texts(suite, recipe["method"]["calibration_examples"], recipe["seed"])
    manifest = prune_model(build.source.path, directory, recipe, calibration_texts=texts, suite=suite)
    return {"pruning": {**manifest["pruning"], "size": manifest["size"], "heal": manifest["heal"]}}


def pruned_inputs(build: FormBuild) -> dict:
    from tuning.artifact import TRAINING_CODE

    heals = build.recipe.get("method", {}).get("heal_steps")
    # Healing trains the pruned model with the tuning loop: its code is part of what the form is made from.
    return {"prune": build.recipe, "suite": {"name": build.suite.name, "fingerprint": build.suite.fingerprint},
            "training": TRAINING_CODE if heals else None}


def load_pruned_recipe(path: Path | None, profile: str) -> dict:
    from tuning.prune import load_prune_recipe as load

    return load(config=path, profile=profile)


PRUNED = register_form(Form(name="pruned", order=20, make=make_pruned, inputs=pruned_inputs,
                            recipe="prune", load_recipe=load_pruned_recipe, vllm_servable=True))
