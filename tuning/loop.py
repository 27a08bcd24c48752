"""The one training loop every strategy shares: plain PyTorch driven by an accelerate Accelerator.

The Accelerator picks the device, wraps the model in DDP under `torchrun` / `accelerate launch`,
and runs forward and loss under bf16 autocast where the hardware computes bf16 natively (GPUs,
CPUs with AVX-512 BF16 or AMX; the recipe's `train.mixed_precision`: auto, bf16 or fp32), with
fp32 weights and optimizer state throughout. Everything else is a loop a
reader can follow: micro-batches in a seeded order, token-weighted gradient accumulation, clipping,
a transformers schedule with warm-up, dev-loss early stopping, and atomic checkpoints from which a
killed run resumes to the same weights an uninterrupted run reaches.
"""

from __future__ import annotations

import contextlib
import math
import pickle
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from harness.atomic import atomic_file, staged_dir, write_atomic
from harness.errors import DomainbenchError
from harness.models import cpu_has_native_bf16
from harness.progress import progress_bar
from tuning.batches import collate, model_inputs, packable, packed_collate
from tuning.loss import IGNORE_INDEX, causal_lm_loss_sum
from tuning.memory import peak_memory
from tuning.recipe import TrainConfig

# loss_fn(model, batch) -> (summed loss over labelled tokens, number of labelled tokens)
LossFn = Callable[[torch.nn.Module, dict], tuple[torch.Tensor, int]]
LATEST = "latest"
BEST_WEIGHTS = "best.pt"


@dataclass
class TrainState:
    """What a checkpoint restores besides weights and optimizer: where the run stands."""

    step: int = 0
    position: int = 0                 # next micro-batch in the seeded data order
    losses: list[float] = field(default_factory=list)
    dev_losses: list[tuple[int, float]] = field(default_factory=list)
    dev_loss_before: float | None = None
    best_dev_loss: float = math.inf
    evals_without_improvement: int = 0
    tokens_seen: int = 0
    train_seconds: float = 0.0
    stopped_early: bool = False


@dataclass
class TrainResult:
    state: TrainState
    wall_seconds: float
    peak_memory_bytes: int
    peak_memory_kind: str             # "cuda_max_allocated", "cpu_peak_rss" or "cpu_process_max_rss" (tuning.memory)
    world_size: int
    mixed_precision: str = "no"       # what accelerate ran the forward and loss in: "bf16" or "no" (fp32)

    @property
    def tokens_per_second(self) -> float:
        return self.state.tokens_seen / self.state.train_seconds if self.state.train_seconds else 0.0


def causal_lm_loss(model: torch.nn.Module, batch: dict, *, chunk_size: int) -> tuple[torch.Tensor, int]:
    """Next-token loss of `batch` through `model` (plain, PEFT or DDP-wrapped), chunked over positions."""
    return causal_lm_loss_sum(final_hidden(model, batch), unwrap(model).get_output_embeddings(),
                              batch["labels"], chunk_size=chunk_size)


def final_hidden(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    """Normalised last-layer hidden states [B, T, H] for the batch's positions.

    `logits_to_keep=1` makes the model project only the last position, so the full logits are
    never computed; prompt tuning prepends virtual positions, which the slice drops.
    """
    outputs = model(**model_inputs(batch), output_hidden_states=True, logits_to_keep=1, use_cache=False)
    return outputs.hidden_states[-1][:, -batch["input_ids"].shape[1]:]


def batch_maker(model: torch.nn.Module, config: TrainConfig) -> Callable[..., dict]:
    """Packed micro-batches where the recipe asks and the model allows (tuning/batches.py), else padded."""
    return packed_collate if config.packing and packable(unwrap(model)) else collate


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def train(model: torch.nn.Module, train_examples: list[dict], dev_examples: list[dict], config: TrainConfig, *,
          work_dir: Path, pad_id: int, loss_fn: LossFn | None = None, resume: bool = False,
          description: str = "training") -> TrainResult:
    """Train the parameters of `model` that require grad; afterwards it holds the best dev-loss weights.

    Checkpoints go to `work_dir/checkpoints`; with `resume` the latest one is continued from.
    """
    from accelerate.utils import set_seed

    started = time.perf_counter()
    accelerator = _accelerator(config.mixed_precision)
    world, rank = accelerator.num_processes, accelerator.process_index
    per_epoch = len(train_examples) // (config.batch_size * world)
    if per_epoch == 0:
        raise DomainbenchError(f"{len(train_examples)} training examples: fewer than one batch of "
                               f"{config.batch_size} per process x {world} processes")
    loss_fn = loss_fn or (lambda m, b: causal_lm_loss(m, b, chunk_size=config.loss_chunk_size))
    set_seed(config.seed)
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    compiled = compile_layers(model) if config.compile else []
    model = accelerator.prepare(model)
    batch_of = batch_maker(model, config)
    trainable = [p for p in unwrap(model).parameters() if p.requires_grad]
    optimizer = _optimizer(trainable, config)
    scheduler = _scheduler(optimizer, config)
    checkpoints = Path(work_dir) / "checkpoints"
    state = TrainState()
    if resume and (checkpoints / LATEST).is_file():
        state = _load_checkpoint(checkpoints, unwrap(model), optimizer, scheduler)
    elif accelerator.is_main_process:
        shutil.rmtree(checkpoints, ignore_errors=True)
    accelerator.wait_for_everyone()
    if state.dev_loss_before is None and dev_examples:
        state.dev_loss_before = dev_loss(model, dev_examples, config, accelerator, pad_id, loss_fn)

    model.train()
    with _progress(accelerator.is_main_process) as bar:
        task = bar.add_task(description, total=config.max_steps, info="", completed=state.step)
        while state.step < config.max_steps and not state.stopped_early:
            step_started = time.perf_counter()
            batches = [batch_of([train_examples[i] for i in _batch_indices(
                state.position + k, len(train_examples), config, rank, world, per_epoch)], pad_id, accelerator.device)
                for k in range(config.grad_accum)]
            loss = _accumulate(model, batches, loss_fn, accelerator)
            if not math.isfinite(loss):
                raise DomainbenchError(_nonfinite_message(loss, state.step + 1, checkpoints))
            torch.nn.utils.clip_grad_norm_(trainable, config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state.step += 1
            state.position += config.grad_accum
            state.losses.append(loss)
            state.tokens_seen += _reduced_sum(accelerator, sum(int(b["attention_mask"].sum()) for b in batches))
            state.train_seconds += time.perf_counter() - step_started
            bar.update(task, completed=state.step, info=f"loss {loss:.3f} · "
                       f"{state.tokens_seen / state.train_seconds:,.0f} tok/s")
            if dev_examples and (state.step % config.eval_every == 0 or state.step == config.max_steps):
                _early_stopping(state, dev_loss(model, dev_examples, config, accelerator, pad_id, loss_fn),
                                config, checkpoints, unwrap(model), accelerator)
            if state.step % config.checkpoint_every == 0 or state.step == config.max_steps or state.stopped_early:
                _save_checkpoint(checkpoints, state, unwrap(model), optimizer, scheduler, config, accelerator)
    if (checkpoints / BEST_WEIGHTS).is_file():
        _load_trainable(unwrap(model), torch.load(checkpoints / BEST_WEIGHTS, weights_only=True))
    model = accelerator.unwrap_model(model, keep_fp32_wrapper=False)  # the plain forward again, no autocast
    uncompile(compiled)  # evaluation runs other shapes and grad modes: each would compile again
    model.eval()
    memory, kind = peak_memory()
    return TrainResult(state=state, wall_seconds=time.perf_counter() - started, peak_memory_bytes=memory,
                       peak_memory_kind=kind, world_size=world, mixed_precision=str(accelerator.mixed_precision))


def compile_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """Compile each transformer layer in place (`train.compile`): regional compilation.

    The layers share one compiled graph, so it compiles once, and in place the state-dict keys stay
    as they are (checkpoints, adapters and merges are unaffected). LoRA on SmolLM2-135M, 4 x 128
    tokens, bf16 autocast, 2-core AVX-512 BF16 CPU (2026-12-02): 1.79 s a step against 2.05 eager,
    for ~29 s of compilation in the first step (the whole model compiled at once: 122 s). That pays
    after ~110 steps: a full-profile budget, not the quick one.
    """
    layers = list(transformer_layers(unwrap(model)))
    for layer in layers:
        layer.compile()
    return layers


def uncompile(layers: list[torch.nn.Module]) -> None:
    for layer in layers:
        layer._compiled_call_impl = None  # what nn.Module.compile() set; None is the eager forward


def transformer_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The decoder's stack of layers (`model.model.layers` in Llama-style models)."""
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and name.endswith("layers"):
            return module
    raise DomainbenchError(f"{type(model).__name__}: no stack of transformer layers found (a ModuleList named *layers)")


def mean_dev_loss(model, dev_examples: list[dict], config: TrainConfig, pad_id: int,
                  loss_fn: LossFn | None = None) -> float:
    """Mean loss per labelled token of `model` on `dev_examples` (the causal-LM loss by default)."""
    loss_fn = loss_fn or (lambda m, b: causal_lm_loss(m, b, chunk_size=config.loss_chunk_size))
    return dev_loss(model, dev_examples, config, _accelerator(config.mixed_precision), pad_id, loss_fn)


def dev_loss(model, dev_examples: list[dict], config: TrainConfig, accelerator, pad_id: int,
             loss_fn: LossFn) -> float:
    """Mean loss per labelled dev token; each process scores its share, the sums are reduced."""
    was_training = model.training
    model.eval()
    mine = dev_examples[accelerator.process_index::accelerator.num_processes]
    batch_of = batch_maker(model, config)
    total, tokens = 0.0, 0
    with torch.no_grad(), accelerator.autocast():
        for start in range(0, len(mine), config.batch_size):
            loss, n = loss_fn(model, batch_of(mine[start:start + config.batch_size], pad_id, accelerator.device))
            total, tokens = total + float(loss), tokens + n
    model.train(was_training)
    total = _reduced_sum(accelerator, total)
    tokens = _reduced_sum(accelerator, tokens)
    return total / tokens if tokens else float("nan")


def _accelerator(precision: str = "auto"):
    """An Accelerator on this process's device with the recipe's mixed precision (auto: by hardware)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    cuda = torch.cuda.is_available()
    # auto is bf16 where the hardware computes it natively. On a 2-core AVX-512 BF16 CPU (2026-12-01,
    # SmolLM2-135M, 128-token rows) autocast pays from batch 4 up — LoRA 113 -> 150 tok/s, full
    # fine-tuning 115 tok/s against 60 in fp32 at batch 1 — but not at batch 1 (110 -> 106 tok/s),
    # where re-casting the fp32 weights at every op costs what the bf16 matmuls save.
    native = cuda or cpu_has_native_bf16()
    mixed = {"bf16": "bf16", "fp32": "no"}.get(precision) or ("bf16" if native else "no")
    state = AcceleratorState._shared_state
    if state and state.get("_mixed_precision") not in (None, mixed):
        # accelerate keeps one precision per process and refuses another; a later strategy (or
        # test) may ask for a different one. The distributed state (PartialState) is kept.
        AcceleratorState._reset_state()
    # cpu=True is what makes accelerate join a gloo group under torchrun on a machine without GPUs.
    return Accelerator(cpu=not cuda, mixed_precision=mixed)


def _accumulate(model, batches: list[dict], loss_fn: LossFn, accelerator) -> float:
    """Backward over the micro-batches of one step; returns the step's mean loss per labelled token.

    Each micro-batch's summed loss is divided by the labelled tokens of the whole step on all
    processes (times the world size, since DDP averages gradients), so accumulation and
    distribution weight every token equally, whatever the padding.
    """
    world = accelerator.num_processes
    local_tokens = sum(int((b["labels"][:, 1:] != IGNORE_INDEX).sum()) for b in batches)
    global_tokens = max(_reduced_sum(accelerator, local_tokens), 1)
    total = 0.0
    for index, batch in enumerate(batches):
        sync = index == len(batches) - 1
        with contextlib.nullcontext() if sync else accelerator.no_sync(model), accelerator.autocast():
            loss_sum, _ = loss_fn(model, batch)
        accelerator.backward(loss_sum * world / global_tokens)
        total += float(loss_sum.detach())
    return _reduced_sum(accelerator, total) / global_tokens


def _reduced_sum(accelerator, value: float | int):
    if accelerator.num_processes == 1:
        return value
    tensor = torch.tensor(float(value), dtype=torch.float64, device=accelerator.device)
    reduced = accelerator.reduce(tensor, reduction="sum").item()
    return int(reduced) if isinstance(value, int) else reduced


def _batch_indices(position: int, n: int, config: TrainConfig, rank: int, world: int, per_epoch: int) -> list[int]:
    """The examples of micro-batch `position` on this process: a seeded permutation per epoch."""
    epoch, within = divmod(position, per_epoch)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(config.seed * 100_003 + epoch))
    start = (within * world + rank) * config.batch_size
    return order[start:start + config.batch_size].tolist()


def _optimizer(trainable: list[torch.nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters; no weight decay on biases and norm weights (1-D)."""
    if not trainable:
        raise DomainbenchError("nothing to train: every parameter of the model is frozen")
    groups = [{"params": [p for p in trainable if p.ndim >= 2], "weight_decay": config.weight_decay},
              {"params": [p for p in trainable if p.ndim < 2], "weight_decay": 0.0}]
    # The fused kernel updates every tensor in one pass: 87 ms against 291 ms per step for 161M fp32
    # parameters on a 2-core CPU (2026-12-01); foreach was slower still (484 ms).
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in trainable)
    return torch.optim.AdamW(groups, lr=config.learning_rate, fused=fused)


def _scheduler(optimizer, config: TrainConfig):
    from transformers import get_scheduler

    return get_scheduler(config.schedule, optimizer, num_warmup_steps=config.warmup_steps,
                         num_training_steps=config.max_steps)


def _early_stopping(state: TrainState, loss: float, config: TrainConfig, checkpoints: Path, model, accelerator) -> None:
    state.dev_losses.append((state.step, loss))
    if loss < state.best_dev_loss:
        state.best_dev_loss, state.evals_without_improvement = loss, 0
        if accelerator.is_main_process:
            _atomic_torch_save(_trainable_state(model), checkpoints / BEST_WEIGHTS)
    else:
        state.evals_without_improvement += 1
        patience = config.early_stopping_patience
        state.stopped_early = patience > 0 and state.evals_without_improvement >= patience
    accelerator.wait_for_everyone()


def _trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().cpu().clone() for name, p in model.named_parameters() if p.requires_grad}


def _load_trainable(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    parameters = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in weights.items():
            parameters[name].copy_(value)


def _rng_state() -> dict:
    """Every generator's state as tensors and plain values, which torch.load(weights_only=True) reads back."""
    generator, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    numpy_state = {"generator": generator, "keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                   "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)}
    return {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": numpy_state,
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _set_rng_state(rng: dict) -> None:
    torch.set_rng_state(rng["torch"])
    random.setstate(rng["python"])
    numpy_state = rng["numpy"]
    np.random.set_state((numpy_state["generator"], numpy_state["keys"].numpy().astype(np.uint32),
                         numpy_state["position"], numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    if torch.cuda.is_available() and rng["cuda"]:
        torch.cuda.set_rng_state_all(rng["cuda"])


def _save_checkpoint(checkpoints: Path, state: TrainState, model, optimizer, scheduler, config: TrainConfig,
                     accelerator) -> None:
    """Write step-N/ through a temporary dir and a rename, then point `latest` at it."""
    if accelerator.is_main_process:
        name = f"step-{state.step:07d}"
        with staged_dir(checkpoints / name) as staging:
            torch.save({"weights": _trainable_state(model), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "rng": _rng_state(), "state": state.__dict__},
                       staging / "checkpoint.pt")
        write_atomic(checkpoints / LATEST, name)
        for old in sorted(checkpoints.glob("step-*"))[:-config.keep_checkpoints]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()


def _load_checkpoint(checkpoints: Path, model, optimizer, scheduler) -> TrainState:
    path = checkpoints / (checkpoints / LATEST).read_text().strip() / "checkpoint.pt"
    try:
        # A cache may be shared: a planted file must not run code, so nothing but tensors, numbers, strings
        # and containers is read (weights_only; the state dicts and `_rng_state` hold nothing else).
        saved = torch.load(path, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise DomainbenchError(f"checkpoint {path}: holds more than tensors and plain values, so it is not one "
                               "this loop wrote; delete it, or train again without --resume") from exc
    _load_trainable(model, saved["weights"])
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    _set_rng_state(saved["rng"])
    return TrainState(**saved["state"])


def _nonfinite_message(loss: float, step: int, checkpoints: Path) -> str:
    latest = checkpoints / LATEST
    good = (f"last good checkpoint: {checkpoints / latest.read_text().strip()} (continue from it with --resume "
            "after lowering the learning rate)") if latest.is_file() else "no checkpoint was written before it"
    return f"training loss became {loss} at step {step}; stopped; {good}"


def _atomic_torch_save(obj, path: Path) -> None:
    with atomic_file(path, "wb") as handle:
        torch.save(obj, handle)


def _progress(main_process: bool):
    return progress_bar() if main_process else _SilentProgress()


class _SilentProgress(contextlib.nullcontext):
    """What non-main processes get instead of a bar: the same calls, no output."""

    def __enter__(self):
        return self

    def add_task(self, *args, **kwargs) -> int:
        return 0

    def update(self, *args, **kwargs) -> None:
        return None
