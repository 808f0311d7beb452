"""The model card (README.md) of an exported adapter or merged model: base model, training mode, data, metrics per
round and the best round, every figure read from the store."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from engine.config.schema import RunConfig
from engine.export.dataset_card import _fence
from engine.export.run_facts import pct, round_counts, student_facts, teacher_facts
from engine.store.db import Store
from engine.store.rows import Round, Run
from engine.tasks.base import Task

Kind = Literal["adapter", "merged"]
_MODES = {"qlora-nf4": "QLoRA: the base's weights frozen in 4-bit NF4, LoRA adapters trained on top",
          "lora-bf16": "LoRA: the base's weights frozen in bf16, LoRA adapters trained on top",
          "lora-fp32": "LoRA: the base's weights frozen in fp32, LoRA adapters trained on top"}


def write_model_card(store: Store, run_id: int, cfg: RunConfig, task: Task, best: int, folder: Path, kind: Kind,
                     dtype: str = "float16") -> Path:
    """README.md in an exported adapter or merged-model folder (replacing the template peft writes there)."""
    path = Path(folder) / "README.md"
    path.write_text(model_card(store, run_id, cfg, task, best, kind, folder.name, dtype), encoding="utf-8")
    return path


def model_card(store: Store, run_id: int, cfg: RunConfig, task: Task, best: int, kind: Kind, folder_name: str,
               dtype: str = "float16") -> str:
    """The card's text: the Hub's YAML header, then base model, training, data, metrics per round, best round, use."""
    from huggingface_hub import ModelCardData

    run = store.run(run_id)
    rounds = store.rounds(run_id)
    header = ModelCardData(library_name="peft" if kind == "adapter" else "transformers", pipeline_tag="text-generation",
                           tags=["llm2llm", "lora" if kind == "adapter" else "merged-lora"])
    what = f"LoRA adapter (round {best})" if kind == "adapter" else f"round {best}'s LoRA adapter merged into a {dtype} base"
    intro = (f"# llm2llm run {run_id}: {cfg.name} — {what}\n\n"
             f"The student `{cfg.student.model}` fine-tuned by llm2llm run {run_id} on its {task.kind} task; validation "
             f"chose round {best}. Every figure on this card is read from the run's store ({store.path.name}).\n\n"
             "No license is set: the base model's licence and the teacher's terms decide what you may choose; add it to "
             "the header before publishing.")
    parts = [f"---\n{header.to_yaml()}\n---", intro, _base(cfg), _training(run, cfg, rounds, best),
             _data(store, run_id, cfg, rounds, best), _metrics(store, run_id, rounds, best, cfg), _best(rounds, best),
             _use(cfg, task, kind, folder_name)]
    return "\n\n".join(parts) + "\n"


def _base(cfg: RunConfig) -> str:
    facts = student_facts(cfg)
    sha = f"`{facts.sha256}` ({facts.source})" if facts.sha256 else f"unknown: {facts.source}"
    lines = ["## Base model", "", f"- name: `{facts.name}`", f"- sha256: {sha}"]
    if facts.licence:
        lines.append(f"- licence (the catalog's note): {facts.licence}")
    return "\n".join(lines)


def _training(run: Run, cfg: RunConfig, rounds: list[Round], best: int) -> str:
    plan = run.plan or {}
    mode = plan.get("mode")
    said = (f"{_MODES.get(mode, mode)} (`{mode}` on {plan.get('device')}: {plan.get('reason')})" if mode
            else "unknown: the run recorded no training plan")
    lora, train = cfg.lora, cfg.train
    length = f"{train.steps} optimizer steps" if train.steps else f"{train.epochs:g} epochs"
    if train.eval_every:
        length = (f"up to {length}, the length chosen on validation (scored every {train.eval_every} steps, the best "
                  f"kept, stopped after {train.patience} looks without a gain)")
    start = "the base model" if cfg.loop.retrain_from == "base" else "the previous round's adapter"
    lines = ["## Training", "", f"- mode: {said}",
             f"- LoRA: rank {lora.r}, alpha {lora.alpha}, dropout {lora.dropout:g}, on {', '.join(lora.target_modules)}",
             f"- each round: {length}, learning rate {train.learning_rate:g} ({train.scheduler}, warmup {train.warmup_ratio:g}), "
             f"batch {train.batch_size} × {train.grad_accum} accumulated, loss on the response tokens only",
             f"- each round trained from: {start} (loop.retrain_from = {cfg.loop.retrain_from})"]
    row = next((r for r in rounds if r.idx == best), None)
    details = row.train if row is not None else {}
    if details.get("steps") is not None:
        loss = f", mean loss {row.train_loss:.4f}" if row is not None and row.train_loss is not None else ""
        run_past = details.get("steps_run")
        chosen = f" (chosen on validation of {run_past} run)" if details.get("selection") and run_past else ""
        lines.append(f"- round {best}: {details['steps']} optimizer steps{chosen}{loss}")
    return "\n".join(lines)


def _data(store: Store, run_id: int, cfg: RunConfig, rounds: list[Round], best: int) -> str:
    seeds = store.count("examples", run_id=run_id, split="seed")
    counts = round_counts(store, run_id)
    before = sum(c.kept for idx, c in counts.items() if 0 <= idx < best)
    row = next((r for r in rounds if r.idx == best), None)
    size = row.train_size if row is not None else None
    teacher = teacher_facts(store, run_id, cfg)
    sha = ", ".join(f"`{d}`" for d in teacher.sha256) if teacher.sha256 else f"unknown ({teacher.unknown_why})"
    later = (f"and the {before} new examples rounds 0–{best - 1} kept" if best > 0 else "alone (round 0 is plain "
             "fine-tuning)")
    lines = ["## Data", "",
             f"- round {best} trained on {size if size is not None else 'an unrecorded number of'}"
             f" examples: the {seeds} seed examples {later}",
             f"- new examples came from: loop.source = {cfg.loop.source} (teacher `{teacher.name}`, backend "
             f"{teacher.backend}, sha256 {sha})",
             f"- the training set with each row's origin, round, parent and teacher call: `run-{run_id}-dataset/` "
             f"(`datasets.load_from_disk`) and `run-{run_id}-train.jsonl`, which `l2l export` writes beside this folder"]
    return "\n".join(lines)


def _metrics(store: Store, run_id: int, rounds: list[Round], best: int, cfg: RunConfig) -> str:
    counts_note = ("test is scored every round (loop.score_test_every_round = true), and never used to choose"
                   if cfg.loop.score_test_every_round else
                   "test is scored only for the round validation chose (–: not scored), and never used to choose")
    kept = round_counts(store, run_id)
    lines = ["## Metrics per round", "", f"Accuracy in %; {counts_note}. New kept: the new examples the round made that "
             "the checks kept (they train the next round).", "",
             "| round | train size | seed | validation | test | misses | new kept |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rounds:
        if r.train_size is None and r.val_acc is None:
            continue  # a round that never trained
        mark = "*" if r.idx == best else ""
        lines.append(f"| {r.idx}{mark} | {r.train_size if r.train_size is not None else '–'} | {pct(r.seed_acc)} | "
                     f"{pct(r.val_acc)} | {pct(r.test_acc)} | {r.misses if r.misses is not None else '–'} | "
                     f"{kept[r.idx].kept if r.idx in kept else '–'} |")
    lines += ["", "\\* the round validation chose."]
    return "\n".join(lines)


def _best(rounds: list[Round], best: int) -> str:
    row = next((r for r in rounds if r.idx == best), None)
    if row is None:
        return f"## Best round\n\nRound {best}: the store holds no scores for it."
    first = next((r for r in rounds if r.idx == 0), None)
    plain = ""
    if best != 0 and first is not None:
        plain = f" Round 0, plain fine-tuning on the seeds: validation {_score(first.val_acc)}, test {_score(first.test_acc)}."
    return f"## Best round\n\nValidation chose round {best}: validation {_score(row.val_acc)}, test {_score(row.test_acc)}.{plain}"


def _score(value: float | None) -> str:
    return "not scored" if value is None else f"{pct(value)}%"


def _use(cfg: RunConfig, task: Task, kind: Kind, folder_name: str) -> str:
    if kind == "adapter":
        load = ("from peft import PeftModel\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
                f"# BASE_FOLDER: {cfg.student.model} as a Hugging Face folder (llm2llm converts a GGUF once, into its model cache)\n"
                "base = AutoModelForCausalLM.from_pretrained(BASE_FOLDER)\n"
                f"model = PeftModel.from_pretrained(base, \"{folder_name}\")\ntokenizer = AutoTokenizer.from_pretrained(BASE_FOLDER)")
    else:
        load = ("from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
                f"model = AutoModelForCausalLM.from_pretrained(\"{folder_name}\")\n"
                f"tokenizer = AutoTokenizer.from_pretrained(\"{folder_name}\")")
    stops = ", ".join(repr(s) for s in task.stop)
    return "\n".join(["## Use", "", _fence(load, "python"), "",
                      "It was trained on raw prompts (no chat template): send the task's prompt with the input filled in, "
                      f"decode greedily (as evaluated, at most {cfg.eval.max_new_tokens} new tokens) and stop at {stops}.",
                      "", _fence(task.prompt_template, "text")])
