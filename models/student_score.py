"""The student's evaluation: greedy generation, and option scoring that runs each prompt once and its options from the
prompt's KV cache."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from typing import Any, cast

import torch

from models.batching import Encoded, collate, encode_continuation, encode_prompt
from models.student import Student

# (token ids, [(position, token, prompt index, option index)]): one sequence and the tokens it scores
_Item = tuple[list[int], list[tuple[int, int, int, int]]]
# (prompt index, prompt ids, [(option index, option ids)]): one prompt scored from its KV cache
_Group = tuple[int, list[int], list[tuple[int, list[int]]]]


class StudentScorer:
    """Evaluates a loaded Student with its current adapter: StudentScorer(student).score_options(...) or .generate(...)."""

    def __init__(self, student: Student) -> None:
        self.student = student

    def generate(
        self,
        prompts: list[str],
        max_new_tokens: int,
        stop: list[str],
        batch_size: int,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> list[str]:
        """Greedy completions (text after the prompt, cut at the first stop string), in input order."""
        from transformers import GenerationConfig, StoppingCriteriaList

        student = self.student
        encoded = [encode_prompt(student.tokenizer, p, student.max_length) for p in prompts]
        order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
        outputs: list[str] = [""] * len(prompts)
        gen_cfg = GenerationConfig(
            do_sample=False,
            num_beams=1,
            max_new_tokens=max_new_tokens,
            pad_token_id=student.pad_id,
            eos_token_id=sorted(student.eos_ids),
        )
        student.ready_for_inference()
        lm = student.lm
        done = 0
        for chunk in _chunks(order, batch_size):
            items = [Encoded(encoded[i], encoded[i]) for i in chunk]
            batch = collate(items, student.pad_id, left=True)
            width = batch["input_ids"].shape[1]
            criteria = _StopOnStrings(student.tokenizer, stop, width, student.eos_ids)
            with torch.inference_mode(), student.autocast():
                out = lm.generate(
                    input_ids=batch["input_ids"].to(student.device),
                    attention_mask=batch["attention_mask"].to(student.device),
                    generation_config=gen_cfg,
                    stopping_criteria=StoppingCriteriaList([criteria]),
                )
            for row, i in enumerate(chunk):
                new = out[row, width:].tolist()
                outputs[i] = _cut(self._continuation(encoded[i], new), stop)
            done += len(chunk)
            student.between_batches()
            if on_progress is not None:
                on_progress(done, len(prompts))
        return outputs

    def _continuation(self, prompt_ids: list[int], new_ids: list[int]) -> str:
        """Text the new tokens add after the prompt (decoded in context, so word-initial spaces survive)."""
        student = self.student
        for k, t in enumerate(new_ids):
            if t in student.eos_ids:
                new_ids = new_ids[:k]
                break
        decode = student.tokenizer.decode
        before = decode(prompt_ids, skip_special_tokens=True)
        full = decode(prompt_ids + new_ids, skip_special_tokens=True)
        return full[len(before) :] if full.startswith(before) else decode(new_ids, skip_special_tokens=True)

    def score_options(
        self,
        prompts: list[str],
        options: list[list[str]],
        batch_size: int,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> list[list[float]]:
        """Sum of token log-probs of each option continuing its prompt; every prompt runs through the model once.

        A prompt whose options are all one token is scored from one forward pass of the prompt alone. Any other prompt
        runs once with a KV cache and its options' tokens then run from copies of its cache rows; such a prompt is cut
        from the left (keeping BOS) once, so that it fits max_length with its longest option (the per-pair reference,
        tests/reference_scorer.py, cuts it separately for each option, so longer prompts may see a few more tokens there).
        """
        student = self.student
        if len(prompts) != len(options):
            raise ValueError(f"{len(prompts)} prompts but {len(options)} option lists")
        scores: list[list[float]] = [[0.0] * len(opts) for opts in options]
        items: list[_Item] = []
        groups: list[_Group] = []
        for i, (prompt, opts) in enumerate(zip(prompts, options, strict=True)):
            opt_ids = [encode_continuation(student.tokenizer, o) for o in opts]
            if opt_ids and all(len(o) == 1 for o in opt_ids):
                items.append(self._last_token_item(i, prompt, opt_ids))
            elif any(opt_ids):
                groups.append(self._prefix_group(i, prompt, opt_ids))
        tick = _counter(len(prompts), on_progress, len(prompts) - len(items) - len(groups))
        student.ready_for_inference()
        self._score_items(items, scores, batch_size, tick)
        self._score_groups(groups, scores, batch_size, tick)
        return scores

    def _last_token_item(self, i: int, prompt: str, opt_ids: list[list[int]]) -> _Item:
        """Prompt i alone, each one-token option read off its last position."""
        student = self.student
        ids = encode_prompt(student.tokenizer, prompt, student.max_length)
        return ids, [(len(ids) - 1, o[0], i, j) for j, o in enumerate(opt_ids)]

    def _prefix_group(self, i: int, prompt: str, opt_ids: list[list[int]]) -> _Group:
        """Prompt i cut once to fit beside its longest option, and its non-empty options."""
        student = self.student
        opts = [(j, o[: student.max_length - 1]) for j, o in enumerate(opt_ids) if o]
        longest = max(len(o) for _, o in opts)
        ids = encode_prompt(student.tokenizer, prompt, student.max_length - longest)
        return i, ids, opts

    def _score_items(self, items: list[_Item], scores: list[list[float]], batch_size: int, tick: Callable[[int], None]) -> None:
        """Add the log-probs that whole sequences give their queried tokens, longest sequences batched together."""
        student = self.student
        remaining: dict[int, int] = {}
        for _, queries in items:
            remaining[queries[0][2]] = remaining.get(queries[0][2], 0) + 1
        order = sorted(range(len(items)), key=lambda k: -len(items[k][0]))
        for chunk in _chunks(order, batch_size):
            batch = collate([Encoded(items[k][0], items[k][0]) for k in chunk], student.pad_id)
            flat = [q for k in chunk for q in items[k][1]]
            rows = [row for row, k in enumerate(chunk) for _ in items[k][1]]
            with torch.inference_mode(), student.autocast():
                logits = student.selected_logits(
                    batch["input_ids"].to(student.device),
                    batch["attention_mask"].to(student.device),
                    torch.tensor(rows, device=student.device),
                    torch.tensor([q[0] for q in flat], device=student.device),
                )
                picked = _picked(logits, [q[1] for q in flat])
            for (_, _, i, j), lp in zip(flat, picked, strict=True):
                scores[i][j] += lp
            finished = 0
            for k in chunk:
                i = items[k][1][0][2]
                remaining[i] -= 1
                finished += remaining[i] == 0
            student.between_batches()
            tick(finished)

    def _score_groups(self, groups: list[_Group], scores: list[list[float]], batch_size: int, tick: Callable[[int], None]) -> None:
        """Add each option's log-probs: prompts of similar length run once, then their options, `batch_size` rows at a time."""
        student = self.student
        for chunk in _length_batches([len(ids) for _, ids, _ in groups], batch_size):
            batch = [groups[k] for k in chunk]
            with torch.inference_mode(), student.autocast():
                cache, mask, first = self._prompt_pass([ids for _, ids, _ in batch])
                for row, (i, _, opts) in enumerate(batch):
                    for j, o in opts:
                        scores[i][j] += first[row][o[0]].item()
                tails = [(row, i, j, o) for row, (i, _, opts) in enumerate(batch) for j, o in opts if len(o) > 1]
                for rows in _length_batches([len(o) for *_, o in tails], batch_size):
                    part = [tails[r] for r in rows]
                    picked = self._option_pass(cache, mask, [(row, o) for row, _, _, o in part])
                    for (_, i, j, _), lps in zip(part, picked, strict=True):
                        scores[i][j] += sum(lps)
            del cache
            student.between_batches()
            tick(len(batch))

    def _prompt_pass(self, prompts: list[list[int]]) -> tuple[Any, torch.Tensor, torch.Tensor]:
        """Run left-padded prompts once: their KV cache, attention mask, and log-probs of the token after each."""
        from transformers import DynamicCache

        student = self.student
        batch = collate([Encoded(p, p) for p in prompts], student.pad_id, left=True)
        mask = batch["attention_mask"].to(student.device)
        # A cache without the config holds every layer in full; left padding keeps index distances equal to
        # position distances, so sliding-window layers mask exactly as they would on the unpadded prompt.
        cache = DynamicCache()
        rows = torch.arange(len(prompts), device=student.device)
        cols = torch.full_like(rows, mask.shape[1] - 1)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = student.selected_logits(batch["input_ids"].to(student.device), mask, rows, cols, positions, cache)
        return cache, mask, torch.log_softmax(logits, dim=-1)

    def _option_pass(self, cache: Any, mask: torch.Tensor, options: list[tuple[int, list[int]]]) -> list[list[float]]:
        """Log-probs of each option's tokens after its first, given (prompt row in the cache, option ids) pairs."""
        student = self.student
        tails = [o[:-1] for _, o in options]
        batch = collate([Encoded(t, t) for t in tails], student.pad_id)
        ids = batch["input_ids"].to(student.device)
        tail_mask = batch["attention_mask"].to(student.device)
        idx = torch.tensor([row for row, _ in options], device=student.device)
        prompt_mask = mask[idx]
        positions = prompt_mask.sum(-1, keepdim=True) + torch.arange(ids.shape[1], device=student.device)
        rows, cols = tail_mask.nonzero(as_tuple=True)  # row-major: each option's tokens in order
        logits = student.selected_logits(
            ids, torch.cat([prompt_mask, tail_mask], dim=1), rows, cols, positions, _select_rows(cache, idx)
        )
        picked = iter(_picked(logits, [t for _, o in options for t in o[1:]]))
        return [[next(picked) for _ in o[1:]] for _, o in options]


class _StopOnStrings:
    """StoppingCriteria: a row is done once its generated text holds a stop string or ends with EOS."""

    def __init__(self, tokenizer: Any, stops: Sequence[str], start: int, eos_ids: set[int]) -> None:
        self.tokenizer = tokenizer
        self.stops = [s for s in stops if s]
        self.start = start
        self.eos_ids = eos_ids
        self.done: torch.Tensor | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
        if self.done is None:
            self.done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        for row in (~self.done).nonzero().flatten().tolist():
            new = input_ids[row, self.start :].tolist()
            if new and new[-1] in self.eos_ids:
                self.done[row] = True
                continue
            text = self.tokenizer.decode(new, skip_special_tokens=True)
            if any(s in text for s in self.stops):
                self.done[row] = True
        return cast(torch.BoolTensor, self.done.clone())


def _counter(total: int, on_progress: Callable[[int, int], None] | None, done: int) -> Callable[[int], None]:
    """A callback that adds finished prompts to `done` and reports (done, total)."""

    def tick(finished: int) -> None:
        nonlocal done
        done += finished
        if on_progress is not None:
            on_progress(done, total)

    return tick


def _picked(logits: torch.Tensor, tokens: list[int]) -> list[float]:
    """Log-prob of tokens[k] under the k-th row of logits."""
    logprobs = torch.log_softmax(logits, dim=-1)
    return logprobs.gather(1, torch.tensor(tokens, device=logits.device)[:, None]).squeeze(1).tolist()


def _select_rows(cache: Any, rows: torch.Tensor) -> Any:
    """A cache holding the given batch rows of `cache` (repeats allowed); `cache` itself is left as it is."""
    sub = copy.copy(cache)
    sub.layers = [copy.copy(layer) for layer in cache.layers]  # batch_select_indices rebinds the copies' tensors
    sub.batch_select_indices(rows)
    return sub


def _length_batches(lengths: Sequence[int], size: int) -> list[list[int]]:
    """Indices by decreasing length in batches of at most `size`, each closed before padding would pass a quarter of it."""
    batches: list[list[int]] = []
    real = 0
    for k in sorted(range(len(lengths)), key=lambda k: -lengths[k]):
        batch = batches[-1] if batches else []
        if batch and len(batch) < size and 3 * (len(batch) + 1) * lengths[batch[0]] <= 4 * (real + lengths[k]):
            batch.append(k)
            real += lengths[k]
        else:
            batches.append([k])
            real = lengths[k]
    return batches


def _chunks(seq: Sequence[int], size: int) -> Iterator[list[int]]:
    """Consecutive slices of at most `size` items."""
    for start in range(0, len(seq), size):
        yield list(seq[start : start + size])


def _cut(text: str, stop: Sequence[str]) -> str:
    """Text up to the earliest stop string."""
    cut = len(text)
    for s in stop:
        if s and (k := text.find(s)) != -1:
            cut = min(cut, k)
    return text[:cut]
