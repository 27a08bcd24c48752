"""Deployable forms of a model: merged, pruned, int8, nf4, gguf — each an artifact cached by input hash.

A form is made from its parent (a model dir, plus a LoRA adapter for `merged`) and saved in the
format it is deployed in, so it loads without the run that made it. Each form is one module here
declaring a `Form` (tuning/forms/base.py) and registering it; importing this package registers
the builtin ones. Adding a form is one such module plus its import below.
"""

from tuning.forms import gguf, int8, merged, nf4, pruned  # noqa: F401 — each registers its form
from tuning.forms.base import (
    Form,
    FormBuild,
    FormSetting,
    FormSource,
    FormUse,
    chain_engine,
    checked_form_settings,
    form_names,
    form_setting_defaults,
    get_form,
    register_form,
    registered_forms,
    unregister_form,
)
from tuning.forms.build import build_form, form_fingerprint, form_inputs, form_model_path, model_bytes
from tuning.forms.gguf import GGUF_FILE

__all__ = ["GGUF_FILE", "Form", "FormBuild", "FormSetting", "FormSource", "FormUse", "build_form", "chain_engine",
           "checked_form_settings", "form_fingerprint", "form_inputs", "form_model_path", "form_names", "form_setting_defaults", "get_form",
           "model_bytes", "register_form", "registered_forms", "unregister_form"]
