"""The student: a causal LM with a LoRA adapter (trained by models.student_train), evaluated in batches."""

from __future__ import annotations

import contextlib
import copy
import gc
import inspect
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

os.environ["HF_HUB_OFFLINE"] = "1"

import torch

from models.batching import Encoded, collate, encode_continuation, encode_prompt, truncate_left
from models.device import TrainingPlan
from models.errors import ConfigError, ModelNotFoundError
from models.memory import release_heap
from models.params import LoraParams
from models.threads import TorchThreads

# Architectures whose logits are exactly lm_head(decoder hidden state) (Gemma's soft-capping is applied by hand):
# for these the head runs only on the positions that matter (response tokens, option tokens).
_PLAIN_HEAD = {"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "gemma3_text", "phi3", "olmo", "olmo2", "smollm3"}


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


class Student:
    """A base causal LM loaded once, with at most one LoRA adapter attached at a time."""

    def __init__(self, base: Any, tokenizer: Any, plan: TrainingPlan, lora: LoraParams, max_length: int, folder: Path) -> None:
        self.base = base
        self.tokenizer = tokenizer
        self.plan = plan
        self.lora = lora
        self.max_length = max_length
        self.folder = folder
        self.device = torch.device("cuda", _local_rank()) if plan.device == "cuda" else torch.device("cpu")
        self.peft: Any = None  # the PeftModel of the attached adapter, if any
        self._merged = False  # adapter folded into the base weights for inference
        self._looking = False  # a validation look inside training must not fold the adapter into the base
        self._gradient_checkpointing = False
        self._kbit_ready = plan.mode != "qlora-nf4"
        self._fast_head = getattr(base.config, "model_type", "") in _PLAIN_HEAD
        self._keeps_logits = "logits_to_keep" in inspect.signature(base.forward).parameters
        eos = tokenizer.eos_token_id
        gen_eos = getattr(getattr(base, "generation_config", None), "eos_token_id", None)
        ids = {eos} if eos is not None else set()
        ids |= set(gen_eos if isinstance(gen_eos, list) else [gen_eos] if gen_eos is not None else [])
        if not ids:
            raise ConfigError(f"{folder}: the tokenizer has no EOS token, so responses cannot be terminated")
        self.eos_ids = ids
        self.eos_id = eos if eos is not None else min(ids)
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else self.eos_id
        self.threads: TorchThreads | None = None  # on a CPU: torch's threads follow the free cores between steps

    def between_batches(self) -> None:
        """Between two optimizer steps or evaluation batches: let the thread count follow the free cores."""
        if self.threads is not None:
            self.threads.step()

    # ---------------------------------------------------------------- loading

    @classmethod
    def load(
        cls,
        folder: Path,
        plan: TrainingPlan,
        lora: LoraParams,
        max_length: int,
        gradient_checkpointing: bool = False,
        adapter: Path | None = None,
    ) -> Student:
        """Load the base model once for `plan` (4-bit NF4 for QLoRA); `adapter` attaches a saved adapter for evaluation."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise ModelNotFoundError(f"{folder}: no config.json, not a Hugging Face model folder")
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        compute = torch.bfloat16 if plan.compute_dtype == "bfloat16" else torch.float32
        kwargs: dict[str, Any] = {"local_files_only": True}
        if plan.device == "cuda":
            kwargs["device_map"] = {"": _local_rank()}  # each launched process on its own GPU
        if plan.mode == "qlora-nf4":
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=compute,
            )
            kwargs["dtype"] = compute
            kwargs.setdefault("device_map", {"": "cpu"})
        else:
            kwargs["dtype"] = torch.bfloat16 if plan.mode == "lora-bf16" else torch.float32
        base = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
        base.requires_grad_(False)
        base.eval()
        student = cls(base, tokenizer, plan, lora, max_length, folder)
        student._gradient_checkpointing = gradient_checkpointing
        if gradient_checkpointing and plan.mode != "qlora-nf4":
            _enable_checkpointing(base)
        if adapter is not None:
            student.attach_adapter(adapter)
        return student

    @property
    def lm(self) -> Any:
        """The Hugging Face causal LM, with the current adapter's layers injected (if any)."""
        return self.peft.get_base_model() if self.peft is not None else self.base

    def attach_adapter(self, adapter: Path, trainable: bool = False) -> None:
        """Replace the current adapter (if any) by a saved one."""
        from peft import PeftModel

        adapter = Path(adapter)
        if not (adapter / "adapter_config.json").is_file():
            raise ModelNotFoundError(f"{adapter}: no adapter_config.json, not a saved adapter")
        self.detach_adapter()
        self.peft = PeftModel.from_pretrained(self.base, str(adapter), is_trainable=trainable)
        if not trainable:
            self.peft.eval()

    def detach_adapter(self) -> None:
        """Remove the adapter's layers, leaving the untouched base model."""
        if self.peft is not None:
            if self._merged:
                self.peft.unmerge_adapter()
                self._merged = False
            self.base = self.peft.unload()
            self.peft = None
            self.base.requires_grad_(False)
            if hasattr(self.base, "peft_config"):
                del self.base.peft_config

    def fresh_adapter(self) -> None:
        """A newly initialised LoRA adapter on the base weights (uses the torch RNG: seed first)."""
        from peft import LoraConfig as PeftLoraConfig
        from peft import get_peft_model

        self.detach_adapter()
        cfg = PeftLoraConfig(
            r=self.lora.r,
            lora_alpha=self.lora.alpha,
            lora_dropout=self.lora.dropout,
            target_modules=list(self.lora.target_modules),
            bias="none",
            task_type="CAUSAL_LM",
        )
        try:
            self.peft = get_peft_model(self.base, cfg)
        except ValueError as err:
            raise ConfigError(f"lora.target_modules {self.lora.target_modules}: {err}") from None

    def ready_for_inference(self) -> None:
        """Fold the LoRA weights into the base (fp32/bf16 only): forward passes skip every adapter branch.

        A 4-bit base cannot take the merge without rounding, so QLoRA keeps the adapter separate.
        """
        if self._looking:
            self.peft.eval()
            return
        if self.peft is not None and not self._merged and self.plan.mode != "qlora-nf4":
            self.peft.eval()
            self.peft.merge_adapter()
            self._merged = True

    @contextlib.contextmanager
    def looking(self) -> Iterator[None]:
        """A validation look inside training: the adapter in eval mode and unmerged, then back to training mode."""
        self._looking = True
        try:
            self.peft.eval()
            yield
        finally:
            self._looking = False
            self.peft.train()

    def prepare_kbit(self) -> None:
        """prepare_model_for_kbit_training, once, before the first QLoRA training."""
        if self._kbit_ready:
            return
        from peft import prepare_model_for_kbit_training

        self.detach_adapter()
        self.base = prepare_model_for_kbit_training(
            self.base,
            use_gradient_checkpointing=self._gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
        self._kbit_ready = True

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """bf16 autocast on CUDA when the plan computes in bf16; nothing on the CPU."""
        if self.device.type == "cuda" and self.plan.compute_dtype == "bfloat16":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def trainable_params(self) -> int:
        """Parameters that training updates (the adapter's)."""
        model = self.peft if self.peft is not None else self.base
        return sum(p.numel() for p in model.parameters() if p.requires_grad)

    # ---------------------------------------------------------------- forward

    def selected_logits(
        self,
        ids: torch.Tensor,
        mask: torch.Tensor,
        rows: torch.Tensor,
        cols: torch.Tensor,
        positions: torch.Tensor | None = None,
        cache: Any = None,
    ) -> torch.Tensor:
        """fp32 logits at positions (rows[k], cols[k]) only (training's loss, scoring); the LM head never runs on the
        other positions.

        With `cache` the forward pass continues (and extends) that KV cache at the given `positions`.
        """
        lm = self.lm
        extra: dict[str, Any] = {"use_cache": cache is not None}
        if positions is not None:
            extra["position_ids"] = positions
        if cache is not None:
            extra["cache"] = cache
        if self._fast_head:
            hidden = lm.get_decoder()(input_ids=ids, attention_mask=mask, **extra).last_hidden_state
            logits = lm.get_output_embeddings()(hidden[rows, cols]).float()
            cap = getattr(lm.config, "final_logit_softcapping", None)
            if cap:
                logits = torch.tanh(logits / cap) * cap
            return logits
        if self._keeps_logits and len(cols):
            extra["logits_to_keep"] = ids.shape[1] - int(cols.min())
        logits = lm(input_ids=ids, attention_mask=mask, **extra).logits
        return logits[rows, cols - (ids.shape[1] - logits.shape[1])].float()

    # ---------------------------------------------------------------- evaluation

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

        encoded = [encode_prompt(self.tokenizer, p, self.max_length) for p in prompts]
        order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
        outputs: list[str] = [""] * len(prompts)
        gen_cfg = GenerationConfig(
            do_sample=False,
            num_beams=1,
            max_new_tokens=max_new_tokens,
            pad_token_id=self.pad_id,
            eos_token_id=sorted(self.eos_ids),
        )
        self.ready_for_inference()
        lm = self.lm
        done = 0
        for chunk in _chunks(order, batch_size):
            items = [Encoded(encoded[i], encoded[i]) for i in chunk]
            batch = collate(items, self.pad_id, left=True)
            width = batch["input_ids"].shape[1]
            criteria = _StopOnStrings(self.tokenizer, stop, width, self.eos_ids)
            with torch.inference_mode(), self.autocast():
                out = lm.generate(
                    input_ids=batch["input_ids"].to(self.device),
                    attention_mask=batch["attention_mask"].to(self.device),
                    generation_config=gen_cfg,
                    stopping_criteria=StoppingCriteriaList([criteria]),
                )
            for row, i in enumerate(chunk):
                new = out[row, width:].tolist()
                outputs[i] = _cut(self._continuation(encoded[i], new), stop)
            done += len(chunk)
            self.between_batches()
            if on_progress is not None:
                on_progress(done, len(prompts))
        return outputs

    def _continuation(self, prompt_ids: list[int], new_ids: list[int]) -> str:
        """Text the new tokens add after the prompt (decoded in context, so word-initial spaces survive)."""
        for k, t in enumerate(new_ids):
            if t in self.eos_ids:
                new_ids = new_ids[:k]
                break
        decode = self.tokenizer.decode
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
        from the left (keeping BOS) once, so that it fits max_length with its longest option (the per-pair path,
        _score_pairs, cut it separately for each option, so longer prompts may see a few more tokens there).
        """
        if len(prompts) != len(options):
            raise ValueError(f"{len(prompts)} prompts but {len(options)} option lists")
        scores: list[list[float]] = [[0.0] * len(opts) for opts in options]
        items: list[_Item] = []
        groups: list[_Group] = []
        for i, (prompt, opts) in enumerate(zip(prompts, options, strict=True)):
            opt_ids = [encode_continuation(self.tokenizer, o) for o in opts]
            if opt_ids and all(len(o) == 1 for o in opt_ids):
                items.append(self._last_token_item(i, prompt, opt_ids))
            elif any(opt_ids):
                groups.append(self._prefix_group(i, prompt, opt_ids))
        tick = _counter(len(prompts), on_progress, len(prompts) - len(items) - len(groups))
        self.ready_for_inference()
        self._score_items(items, scores, batch_size, tick)
        self._score_groups(groups, scores, batch_size, tick)
        return scores

    def _score_pairs(
        self,
        prompts: list[str],
        options: list[list[str]],
        batch_size: int,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> list[list[float]]:
        """score_options as it was: one whole sequence per (prompt, option) pair of several tokens (tests, bench)."""
        if len(prompts) != len(options):
            raise ValueError(f"{len(prompts)} prompts but {len(options)} option lists")
        scores: list[list[float]] = [[0.0] * len(opts) for opts in options]
        items: list[_Item] = []
        for i, (prompt, opts) in enumerate(zip(prompts, options, strict=True)):
            opt_ids = [encode_continuation(self.tokenizer, o) for o in opts]
            if opt_ids and all(len(o) == 1 for o in opt_ids):
                items.append(self._last_token_item(i, prompt, opt_ids))
            else:
                items.extend(self._pair_items(i, prompt, opt_ids))
        tick = _counter(len(prompts), on_progress, len(prompts) - len({q[0][2] for _, q in items}))
        self.ready_for_inference()
        self._score_items(items, scores, batch_size, tick)
        return scores

    def _last_token_item(self, i: int, prompt: str, opt_ids: list[list[int]]) -> _Item:
        """Prompt i alone, each one-token option read off its last position."""
        ids = encode_prompt(self.tokenizer, prompt, self.max_length)
        return ids, [(len(ids) - 1, o[0], i, j) for j, o in enumerate(opt_ids)]

    def _pair_items(self, i: int, prompt: str, opt_ids: list[list[int]]) -> list[_Item]:
        """One whole sequence per non-empty option of prompt i, the prompt cut to fit beside each option."""
        full_prompt = encode_prompt(self.tokenizer, prompt, self.max_length + 1)
        bos = getattr(self.tokenizer, "bos_token_id", None)
        items: list[_Item] = []
        for j, o in enumerate(opt_ids):
            if not o:
                continue
            o = o[: self.max_length - 1]
            p = truncate_left(full_prompt, self.max_length - len(o), bos)
            items.append((p + o, [(len(p) - 1 + k, t, i, j) for k, t in enumerate(o)]))
        return items

    def _prefix_group(self, i: int, prompt: str, opt_ids: list[list[int]]) -> _Group:
        """Prompt i cut once to fit beside its longest option, and its non-empty options."""
        opts = [(j, o[: self.max_length - 1]) for j, o in enumerate(opt_ids) if o]
        longest = max(len(o) for _, o in opts)
        ids = encode_prompt(self.tokenizer, prompt, self.max_length - longest)
        return i, ids, opts

    def _score_items(self, items: list[_Item], scores: list[list[float]], batch_size: int, tick: Callable[[int], None]) -> None:
        """Add the log-probs that whole sequences give their queried tokens, longest sequences batched together."""
        remaining: dict[int, int] = {}
        for _, queries in items:
            remaining[queries[0][2]] = remaining.get(queries[0][2], 0) + 1
        order = sorted(range(len(items)), key=lambda k: -len(items[k][0]))
        for chunk in _chunks(order, batch_size):
            batch = collate([Encoded(items[k][0], items[k][0]) for k in chunk], self.pad_id)
            flat = [q for k in chunk for q in items[k][1]]
            rows = [row for row, k in enumerate(chunk) for _ in items[k][1]]
            with torch.inference_mode(), self.autocast():
                logits = self.selected_logits(
                    batch["input_ids"].to(self.device),
                    batch["attention_mask"].to(self.device),
                    torch.tensor(rows, device=self.device),
                    torch.tensor([q[0] for q in flat], device=self.device),
                )
                picked = _picked(logits, [q[1] for q in flat])
            for (_, _, i, j), lp in zip(flat, picked, strict=True):
                scores[i][j] += lp
            finished = 0
            for k in chunk:
                i = items[k][1][0][2]
                remaining[i] -= 1
                finished += remaining[i] == 0
            self.between_batches()
            tick(finished)

    def _score_groups(self, groups: list[_Group], scores: list[list[float]], batch_size: int, tick: Callable[[int], None]) -> None:
        """Add each option's log-probs: prompts of similar length run once, then their options, `batch_size` rows at a time."""
        for chunk in _length_batches([len(ids) for _, ids, _ in groups], batch_size):
            batch = [groups[k] for k in chunk]
            with torch.inference_mode(), self.autocast():
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
            self.between_batches()
            tick(len(batch))

    def _prompt_pass(self, prompts: list[list[int]]) -> tuple[Any, torch.Tensor, torch.Tensor]:
        """Run left-padded prompts once: their KV cache, attention mask, and log-probs of the token after each."""
        from transformers import DynamicCache

        batch = collate([Encoded(p, p) for p in prompts], self.pad_id, left=True)
        mask = batch["attention_mask"].to(self.device)
        # A cache without the config holds every layer in full; left padding keeps index distances equal to
        # position distances, so sliding-window layers mask exactly as they would on the unpadded prompt.
        cache = DynamicCache()
        rows = torch.arange(len(prompts), device=self.device)
        cols = torch.full_like(rows, mask.shape[1] - 1)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = self.selected_logits(batch["input_ids"].to(self.device), mask, rows, cols, positions, cache)
        return cache, mask, torch.log_softmax(logits, dim=-1)

    def _option_pass(self, cache: Any, mask: torch.Tensor, options: list[tuple[int, list[int]]]) -> list[list[float]]:
        """Log-probs of each option's tokens after its first, given (prompt row in the cache, option ids) pairs."""
        tails = [o[:-1] for _, o in options]
        batch = collate([Encoded(t, t) for t in tails], self.pad_id)
        ids = batch["input_ids"].to(self.device)
        tail_mask = batch["attention_mask"].to(self.device)
        idx = torch.tensor([row for row, _ in options], device=self.device)
        prompt_mask = mask[idx]
        positions = prompt_mask.sum(-1, keepdim=True) + torch.arange(ids.shape[1], device=self.device)
        rows, cols = tail_mask.nonzero(as_tuple=True)  # row-major: each option's tokens in order
        logits = self.selected_logits(
            ids, torch.cat([prompt_mask, tail_mask], dim=1), rows, cols, positions, _select_rows(cache, idx)
        )
        picked = iter(_picked(logits, [t for _, o in options for t in o[1:]]))
        return [[next(picked) for _ in o[1:]] for _, o in options]

    def free(self) -> None:
        """Release the model's memory (the Student is unusable afterwards)."""
        self.peft = None
        self.base = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        release_heap()


def _local_rank() -> int:
    """This process's GPU among those launched on the machine (0 when not launched)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def _enable_checkpointing(model: Any) -> None:
    """Non-reentrant activation checkpointing (the method was renamed in transformers 5)."""
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


# (token ids, [(position, token, prompt index, option index)]): one sequence and the tokens it scores
_Item = tuple[list[int], list[tuple[int, int, int, int]]]
# (prompt index, prompt ids, [(option index, option ids)]): one prompt scored from its KV cache
_Group = tuple[int, list[int], list[tuple[int, list[int]]]]


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
