"""`l2l run --dry-run`: the resolved config, rendered prompts with their loss masks, a teacher prompt, sizes."""

from __future__ import annotations

import json
from statistics import mean
from typing import Any

from rich.console import Group
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from engine.config.schema import RunConfig
from engine.run.runs import Prepared, prepare
from models.memory import PhaseEstimate


def masked_text(tokenizer: Any, prompt: str, response: str, max_length: int) -> tuple[Text, int, int]:
    """The tokens of one training sequence, loss-bearing ones highlighted; plus (tokens, loss tokens)."""
    from models.batching import IGNORE, encode_pair

    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    enc = encode_pair(tokenizer, prompt, response, max_length, eos)
    text = Text()
    pending: list[int] = []  # byte-level tokens that end inside a multi-byte character wait for the rest of it
    for i, (token_id, label) in enumerate(zip(enc.input_ids, enc.labels, strict=True)):
        style = "dim" if label == IGNORE else "bold green underline"
        if token_id == eos and label != IGNORE:
            text.append("⟨eos⟩", style=style)
            continue
        pending.append(token_id)
        piece = tokenizer.decode(pending)
        if piece.endswith("\ufffd") and len(pending) < 4 and i + 1 < len(enc.input_ids):
            continue
        text.append(piece, style=style)
        pending = []
    return text, len(enc.input_ids), enc.label_count


def dry_run_sections(cfg: RunConfig, prepared: Prepared | None = None) -> dict[str, Any]:
    """The dry run as data: config TOML, prompts with masks, teacher messages, sizes (used by CLI and app)."""
    from models.catalog import resolve_model

    prepared = prepared or prepare(cfg, check_models=False)
    task, splits = prepared.task, prepared.splits
    examples = splits.seed[:2]
    pairs = [(task.render_prompt(ex), task.render_response(ex)) for ex in examples]
    sections: dict[str, Any] = {"config": cfg.to_toml(), "pairs": pairs, "masks": [], "sizes": {}}
    try:
        from models.convert import resolve_student_folder
        from models.paths import model_cache
        from models.tokenizer import load_tokenizer

        # the run trains from this folder anyway; reading a tokenizer out of a GGUF through transformers takes minutes
        tokenizer = load_tokenizer(resolve_student_folder(resolve_model(cfg.student.model), model_cache()))
        for prompt, response in pairs:
            sections["masks"].append(masked_text(tokenizer, prompt, response, cfg.student.max_length))
        lengths = [masked_text(tokenizer, task.render_prompt(ex), task.render_response(ex), cfg.student.max_length)[1]
                   for ex in splits.seed[:64]]
        sections["sizes"]["tokens per seed example (mean/max of first 64)"] = f"{mean(lengths):.0f} / {max(lengths)}"
    except Exception as err:  # a missing model must not hide the rest of the dry run
        sections["mask_error"] = f"loss masks unavailable: {err}"
    ex = splits.seed[0]
    sections["teacher"] = task.teacher_messages(ex, "(the student's wrong answer appears here)", cfg.loop.examples_per_miss)
    sections["teacher_schema"] = task.teacher_schema(cfg.loop.examples_per_miss)
    sections["sizes"].update({
        "seed / validation / test": f"{len(splits.seed)} / {len(splits.validation)} / {len(splits.test)}",
        "optimizer steps in round 0": str(cfg.train.optimizer_steps(len(splits.seed))),
        "rounds (at most)": str(cfg.loop.rounds),
        "teacher calls per round (at most)": f"{len(splits.seed)} × {cfg.loop.examples_per_miss} examples each",
    })
    try:
        from models.memory import describe

        sections["memory"] = estimate_memory(cfg, [(task.render_prompt(ex), task.render_response(ex)) for ex in splits.seed],
                                          [task.render_prompt(ex) for ex in splits.validation[:64]])
        sections["sizes"].update(describe(sections["memory"]))
    except Exception as err:  # e.g. a model not installed yet: the rest of the dry run still shows
        sections["sizes"]["estimated peak memory"] = f"unavailable: {err}"
    return sections


def dry_run(cfg: RunConfig) -> Group:
    """The dry run as a rich renderable."""
    s = dry_run_sections(cfg)
    parts: list[Any] = [Panel(Syntax(s["config"], "toml", theme="ansi_dark"), title="resolved config")]
    for i, (prompt, response) in enumerate(s["pairs"]):
        body: Any = Text(prompt + response)
        if i < len(s["masks"]):
            text, n, n_loss = s["masks"][i]
            body = Group(text, Text(f"{n} tokens, loss on {n_loss} (bold green)", style="italic"))
        parts.append(Panel(body, title=f"student prompt {i + 1} (dim: prompt, no loss)"))
    if "mask_error" in s:
        parts.append(Text(s["mask_error"], style="yellow"))
    teacher = "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in s["teacher"])
    parts.append(Panel(Text(teacher), title="teacher prompt"))
    parts.append(Panel(Text(json.dumps(s["teacher_schema"], indent=1)), title="teacher output schema"))
    table = Table("size", "value", title="sizes")
    for key, value in s["sizes"].items():
        table.add_row(key, str(value))
    parts.append(table)
    parts.append(Text("dry run: nothing was trained or written", style="bold"))
    return Group(*parts)


def estimate_memory(cfg: RunConfig, seed_pairs: list[tuple[str, str]], eval_prompts: list[str]) -> PhaseEstimate:
    """The dry run's memory estimate for a config, sizing batches from the seed examples' real token lengths.

    Assumes teacher-written examples are no longer than the longest seed example.
    """
    from models.batching import encode_pair
    from models.catalog import resolve_model
    from models.device import plan_training
    from models.memory import estimate_phases, model_shape
    from models.tokenizer import load_tokenizer

    student_path = resolve_model(cfg.student.model)
    tokenizer = load_tokenizer(student_path)
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    longest = max((len(encode_pair(tokenizer, p, r, cfg.student.max_length, eos).input_ids) for p, r in seed_pairs),
                  default=cfg.student.max_length)
    prompt_tokens = max((len(tokenizer(p)["input_ids"]) for p in eval_prompts), default=longest)
    teacher = model_shape(resolve_model(cfg.teacher.model)) if cfg.teacher.backend == "llama_cpp" else None
    plan = plan_training(cfg.student.quantization)
    return estimate_phases(model_shape(student_path), teacher, batch_size=cfg.train.batch_size, longest_tokens=longest,
                           eval_batch=cfg.eval.batch_size,
                           eval_tokens=min(cfg.student.max_length, prompt_tokens + cfg.eval.max_new_tokens),
                           n_ctx=cfg.teacher.n_ctx, on_gpu=plan.device == "cuda", mode=plan.mode)
