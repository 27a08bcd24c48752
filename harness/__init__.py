"""The ground every room stands on: errors, progress, atomic publishing, manifests, model sources,
the tiny test model and the torch-free request types. It imports no other room."""

__version__ = "0.1.0"
