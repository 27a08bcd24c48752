"""`python -m engines.llama_server ARGS`: llama-cpp-python's OpenAI server (`python -m llama_cpp.server ARGS`)
with the model parameters engines/llama_cpp.py uses, so a GGUF serves on every x86 CPU.

llama-cpp-python 0.3.x's server has no setting (flag, env var or config field) for
`llama_model_params.use_extra_bufts`, and llama.cpp none for the AMX repacking that faults
(see `portable_model_params`). Its `Llama` asks `llama_cpp.llama_cpp.llama_model_default_params()`
for its parameters when it loads a model, so that function is replaced by ours before the server
module runs; everything else is the server as shipped.
"""

from __future__ import annotations

import runpy


def use_portable_model_params() -> None:
    """Make every model llama-cpp-python loads in this process start from `portable_model_params`."""
    import llama_cpp.llama_cpp as bindings

    from engines.llama_cpp import portable_model_params

    shipped = bindings.llama_model_default_params
    bindings.llama_model_default_params = lambda: portable_model_params(shipped())


if __name__ == "__main__":
    use_portable_model_params()
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
