"""The student's model handle: a causal LM loaded once, with at most one LoRA adapter; trained by models.student_train,
scored by models.student_score."""

from __future__ import annotations

import contextlib
import gc
import inspect
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

os.environ["HF_HUB_OFFLINE"] = "1"

import torch

from models.device import TrainingPlan
from models.errors import ConfigError, ModelNotFoundError
from models.memory import release_heap
from models.params import LoraParams
from models.threads import TorchThreads

# Architectures whose logits are exactly lm_head(decoder hidden state) (Gemma's soft-capping is applied by hand):
# for these the head runs only on the positions that matter (response tokens, option tokens).
_PLAIN_HEAD = {"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "gemma3_text", "phi3", "olmo", "olmo2", "smollm3"}


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
