"""A tiny randomly-initialised Llama with a locally trained byte-level BPE tokenizer.

It exists so that tests, benchmarks and smoke runs exercise every code path in seconds without a
model hub. Built deterministically from a seed; the builtin spec `tiny-random-llama` resolves here.
"""

from __future__ import annotations

from pathlib import Path

from harness.atomic import staged_dir

# Text the BPE merges are learned from: enough variety that words split into several tokens,
# which exercises the context/continuation boundary the way a real tokenizer does.
_TOKENIZER_TRAINING_TEXT = """\
The open() system call opens the file specified by pathname. If the specified file does not exist,
it may optionally be created by open(). The return value of open() is a file descriptor, a small,
nonnegative integer. On error, -1 is returned and errno is set to indicate the error: EACCES, EEXIST,
ENOENT, EINVAL. The rename() function renames a file, moving it between directories if required.
Question: Which header declares openat()? Answer: <fcntl.h>. Summary: open and possibly create a file.
The quick brown fox jumps over the lazy dog. Paris is the capital of France. 0123456789
Classify the text: positive, negative, neutral. Entities: FUNCTION: read\nERRNO: EINTR\n
"""

CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def build_tiny_tokenizer(vocab_size: int = 384):
    """A byte-level BPE tokenizer with BOS/EOS/PAD, trained on a fixed text (deterministic)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>", "<|pad|>", "<|bos|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator([_TOKENIZER_TRAINING_TEXT] * 4, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|bos|>",
        eos_token="<|endoftext|>",
        pad_token="<|pad|>",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_tiny_model(tokenizer, *, seed: int = 0, num_layers: int = 2, max_positions: int = 256):
    """A 2-layer Llama (hidden 64) with random weights, seeded."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval()


def save_tiny_model(target: Path, *, seed: int = 0) -> Path:
    """Build the tiny model and tokenizer and save them atomically into `target`."""
    target = Path(target)
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(tokenizer, seed=seed)
    with staged_dir(target) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    return target
