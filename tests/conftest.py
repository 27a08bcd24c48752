"""Shared fixtures: a tiny random Llama built from a config (never a hub download)."""

from __future__ import annotations

import pytest
import torch
from endpoint_fakes import FakeServer

from harness.tiny import build_tiny_model, build_tiny_tokenizer, save_tiny_model


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA; this machine has no GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_tiny_tokenizer()


@pytest.fixture(scope="session")
def tiny_model(tiny_tokenizer):
    return build_tiny_model(tiny_tokenizer)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """The tiny model saved as a Hugging Face directory (what `--model DIR` points at)."""
    return save_tiny_model(tmp_path_factory.mktemp("models") / "tiny-random-llama")


@pytest.fixture
def fake_server():
    servers = []

    def start(answer):
        servers.append(FakeServer(answer))
        return servers[-1]
    yield start
    for server in servers:
        server.close()
