"""`int8`: torchao int8 weights (optionally with dynamic int8 activations), an HF dir whose config
carries the quantization, so `from_pretrained` restores it."""

from __future__ import annotations

from pathlib import Path

from tuning.forms.base import Form, FormBuild, FormSetting, FormUse, importable, register_form
from tuning.quantize import INT8_CONFIGS


def make_int8(build: FormBuild, directory: Path) -> dict:
    from tuning.quantize import save_int8

    return save_int8(build.source.path, directory, scheme=build.settings["int8"])


def int8_requirements(use: FormUse) -> list[str]:
    if importable("torchao"):
        return []
    return [f"{use.names}: int8 needs torchao (pip install torchao; make setup installs it)"]


INT8 = register_form(Form(name="int8", order=30, make=make_int8, settings={"int8": FormSetting("weight-only", tuple(INT8_CONFIGS))},
                          excludes=("nf4",), excludes_why="int8 and nf4 are two quantizations; name one",
                          requirements=int8_requirements, libraries=("torchao",)))
