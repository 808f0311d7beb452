"""Tokenise (prompt, response) pairs with a response-only loss mask, group them by length, pad each batch to its own max."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

IGNORE = -100


@dataclass(frozen=True)
class Encoded:
    """One training sequence: token ids and labels (IGNORE on prompt tokens)."""

    input_ids: list[int]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def label_count(self) -> int:
        """Tokens that carry loss."""
        return sum(1 for t in self.labels if t != IGNORE)


def encode_prompt(tokenizer: Any, prompt: str, max_length: int) -> list[int]:
    """Prompt token ids (with the tokenizer's BOS if it adds one), cut from the left to `max_length`."""
    ids = list(tokenizer(prompt, add_special_tokens=True)["input_ids"])
    return truncate_left(ids, max_length, _bos(tokenizer))


def encode_continuation(tokenizer: Any, text: str) -> list[int]:
    """Token ids of text that follows a prompt (no special tokens)."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def truncate_left(ids: list[int], keep: int, bos: int | None) -> list[int]:
    """The last `keep` ids, keeping a leading BOS in place."""
    if len(ids) <= keep:
        return ids
    if keep <= 0:
        return []
    if bos is not None and ids and ids[0] == bos:
        return [bos] + ids[len(ids) - keep + 1 :] if keep > 1 else [bos]
    return ids[len(ids) - keep :]


def _bos(tokenizer: Any) -> int | None:
    return getattr(tokenizer, "bos_token_id", None)


def encode_pair(tokenizer: Any, prompt: str, response: str, max_length: int, eos_id: int) -> Encoded:
    """Prompt + response + EOS, loss on the response and EOS only; an overlong prompt loses its left part.

    Prompt and response are tokenised separately (as in scoring), so the mask boundary is exact.
    A response longer than the whole budget keeps its start and leaves one prompt token.
    """
    response_ids = encode_continuation(tokenizer, response) + [eos_id]
    if len(response_ids) > max_length - 1:
        response_ids = response_ids[: max(1, max_length - 1)]
    prompt_ids = encode_prompt(tokenizer, prompt, max_length - len(response_ids))
    return Encoded(prompt_ids + response_ids, [IGNORE] * len(prompt_ids) + response_ids)


def length_grouped_batches(
    lengths: Sequence[int], batch_size: int, rng: random.Random, mega_factor: int = 50
) -> list[list[int]]:
    """One epoch of index batches: shuffle, sort by length inside mega-batches, chunk, shuffle the batch order.

    The batch holding the longest sequence goes first, so an out-of-memory shows up at step one.
    """
    order = list(range(len(lengths)))
    rng.shuffle(order)
    mega = max(batch_size * mega_factor, batch_size)
    batches: list[list[int]] = []
    for start in range(0, len(order), mega):
        chunk = sorted(order[start : start + mega], key=lambda i: lengths[i], reverse=True)
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    longest = max(range(len(batches)), key=lambda b: max(lengths[i] for i in batches[b]), default=0)
    if batches:
        batches[0], batches[longest] = batches[longest], batches[0]
    return batches


def shuffled_batches(n: int, batch_size: int, rng: random.Random) -> list[list[int]]:
    """One epoch of plain shuffled index batches (the baseline the benchmark compares against)."""
    order = list(range(n))
    rng.shuffle(order)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def micro_batch_count(n_examples: int, batch_size: int, grad_accum: int, epochs: float, steps: int | None = None) -> int:
    """Micro-batches one training takes: `steps` × grad_accum when steps are fixed, else whole epochs' worth.

    The one source of a training's length: optimizer steps are ceil(this / grad_accum) (see optimizer_steps).
    """
    if n_examples < 1 or batch_size < 1 or grad_accum < 1:
        raise ValueError(f"need n_examples, batch_size and grad_accum >= 1 (got {n_examples}, {batch_size}, {grad_accum})")
    if steps is not None:
        return max(1, steps) * grad_accum
    return max(1, math.ceil(epochs * math.ceil(n_examples / batch_size) - 1e-9))


def optimizer_steps(n_examples: int, batch_size: int, grad_accum: int, epochs: float, steps: int | None = None) -> int:
    """Optimizer steps of one training on n_examples (the last step may accumulate fewer micro-batches)."""
    return math.ceil(micro_batch_count(n_examples, batch_size, grad_accum, epochs, steps) / grad_accum)


def epoch_plan(lengths: Sequence[int], batch_size: int, micro_batches: int, seed: int, grouped: bool = True) -> list[list[int]]:
    """`micro_batches` index batches drawn epoch after epoch, each epoch freshly shuffled."""
    rng = random.Random(seed)
    plan: list[list[int]] = []
    while len(plan) < micro_batches:
        if grouped:
            plan.extend(length_grouped_batches(lengths, batch_size, rng))
        else:
            plan.extend(shuffled_batches(len(lengths), batch_size, rng))
    return plan[:micro_batches]


def step_groups(plan: list[list[int]], grad_accum: int) -> list[list[list[int]]]:
    """The micro-batches of a plan grouped into optimizer steps (grad_accum per step; the last may hold fewer)."""
    return [plan[i : i + grad_accum] for i in range(0, len(plan), grad_accum)]


def collate(
    items: Sequence[Encoded], pad_id: int, pad_to: int | None = None, left: bool = False
) -> dict[str, torch.Tensor]:
    """Stack sequences padded to the batch max (or `pad_to`): input_ids, attention_mask, labels."""
    import torch  # here, not at the top: the step arithmetic above is on every CLI command's import path

    width = max(len(x) for x in items) if pad_to is None else pad_to
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    labels = torch.full((len(items), width), IGNORE, dtype=torch.long)
    for row, item in enumerate(items):
        n = len(item)
        span = slice(width - n, width) if left else slice(0, n)
        ids[row, span] = torch.tensor(item.input_ids, dtype=torch.long)
        mask[row, span] = 1
        labels[row, span] = torch.tensor(item.labels, dtype=torch.long)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}
