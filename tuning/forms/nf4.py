"""`nf4`: bitsandbytes 4-bit NormalFloat (CUDA only), an HF dir whose config carries the quantization."""

from __future__ import annotations

from pathlib import Path

from tuning.forms.base import Form, FormBuild, FormUse, importable, register_form


def make_nf4(build: FormBuild, directory: Path) -> dict:
    from tuning.quantize import save_nf4

    return save_nf4(build.source.path, directory)


def nf4_requirements(use: FormUse) -> list[str]:
    if importable("bitsandbytes"):
        return []
    return [f"{use.names}: nf4 needs bitsandbytes (pip install bitsandbytes)"]


NF4 = register_form(Form(name="nf4", order=40, make=make_nf4, requirements=nf4_requirements,
                         gpu_only="bitsandbytes 4-bit kernels", libraries=("bitsandbytes",)))
