"""The per-pair option scorer that the prompt-cache scorer replaced, kept as the reference it is checked against (tests,
bench/bench_options.py): one whole sequence per (prompt, option) pair of several tokens."""

from __future__ import annotations

from collections.abc import Callable

from models.batching import encode_continuation, encode_prompt, truncate_left
from models.student_score import StudentScorer, _counter, _Item


class PairScorer(StudentScorer):
    """StudentScorer with score_options as it was: each multi-token option runs with its prompt as one sequence."""

    def score_options(
        self,
        prompts: list[str],
        options: list[list[str]],
        batch_size: int,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> list[list[float]]:
        """Sum of token log-probs of each option continuing its prompt, one sequence per (prompt, option) pair."""
        if len(prompts) != len(options):
            raise ValueError(f"{len(prompts)} prompts but {len(options)} option lists")
        scores: list[list[float]] = [[0.0] * len(opts) for opts in options]
        items: list[_Item] = []
        for i, (prompt, opts) in enumerate(zip(prompts, options, strict=True)):
            opt_ids = [encode_continuation(self.student.tokenizer, o) for o in opts]
            if opt_ids and all(len(o) == 1 for o in opt_ids):
                items.append(self._last_token_item(i, prompt, opt_ids))
            else:
                items.extend(self._pair_items(i, prompt, opt_ids))
        tick = _counter(len(prompts), on_progress, len(prompts) - len({q[0][2] for _, q in items}))
        self.student.ready_for_inference()
        self._score_items(items, scores, batch_size, tick)
        return scores

    def _pair_items(self, i: int, prompt: str, opt_ids: list[list[int]]) -> list[_Item]:
        """One whole sequence per non-empty option of prompt i, the prompt cut to fit beside each option."""
        max_length = self.student.max_length
        full_prompt = encode_prompt(self.student.tokenizer, prompt, max_length + 1)
        bos = getattr(self.student.tokenizer, "bos_token_id", None)
        items: list[_Item] = []
        for j, o in enumerate(opt_ids):
            if not o:
                continue
            o = o[: max_length - 1]
            p = truncate_left(full_prompt, max_length - len(o), bos)
            items.append((p + o, [(len(p) - 1 + k, t, i, j) for k, t in enumerate(o)]))
        return items
