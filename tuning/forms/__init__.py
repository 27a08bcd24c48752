"""Deployable forms of a model (tuning/forms/build.py builds them)."""

from tuning.forms.build import _MAKERS, GGUF_FILE, FormSource, build_form, form_fingerprint, form_model_path, model_bytes

__all__ = ["GGUF_FILE", "_MAKERS", "FormSource", "build_form", "form_fingerprint", "form_model_path", "model_bytes"]
