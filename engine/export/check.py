"""Round trip of a run's exports: the merged model (transformers) and each GGUF (llama.cpp, through the Modelfile's
template and stop strings) answer the run's held-out prompts; agreement is the share of answers equal to the run's own
predictions of its best round."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.config.schema import RunConfig
from engine.data.example_rows import example_from_row
from engine.export.run_export import best_round, read_manifest, user_text, write_manifest
from engine.run.scoring import predict
from engine.store.db import Store
from engine.store.rows import StoredExample
from engine.tasks.base import Task
from models.errors import StoreError


def held_out(store: Store, run_id: int, round_idx: int, limit: int | None = None) -> tuple[list[StoredExample], list[str | None]]:
    """Validation and test rows the run predicted in that round, and the run's extracted answer to each."""
    preds = {p.example_id: p for p in store.predictions(run_id, round_idx)}
    rows = [r for split in ("validation", "test") for r in store.examples(run_id, split=split) if r.id in preds]
    if not rows:
        raise StoreError(f"run {run_id} round {round_idx} has no validation or test predictions to compare with")
    rows = rows[:limit] if limit else rows
    return rows, [preds[r.id].extracted for r in rows]


def _figures(rows: list[StoredExample], run_answers: list[str | None], answers: list[str | None], task: Task,
             **extra: Any) -> dict[str, Any]:
    same = sum(1 for run, a in zip(run_answers, answers, strict=True) if a == run)
    correct = sum(task.is_correct(a, example_from_row(r)) for r, a in zip(rows, answers, strict=True))
    return {"n": len(rows), "same": same, "agreement": same / len(rows), "accuracy": correct / len(rows), **extra}


def merged_answers(cfg: RunConfig, task: Task, folder: Path, rows: list[StoredExample], round_idx: int) -> list[str | None]:
    """The merged model's answers, predicted exactly as the run predicted (transformers, the student's own code)."""
    from models.device import plan_training
    from models.params import LoraParams
    from models.student import Student
    from models.student_score import StudentScorer

    student = Student.load(folder, plan_training("none"), LoraParams(), cfg.student.max_length)
    try:
        preds = predict(task, StudentScorer(student), rows, round_idx=round_idx, batch_size=cfg.eval.batch_size,
                        max_new_tokens=cfg.eval.max_new_tokens)
    finally:
        student.free()
    return [p.extracted for p in preds]


def gguf_answers(cfg: RunConfig, task: Task, gguf: Path, modelfile: Path, prompt_input: str,
                 rows: list[StoredExample], n_threads: int | None = None) -> tuple[list[str | None], int]:
    """A GGUF's answers with the Modelfile's template, stop strings and parameters; and how many rendered prompts
    differ from the training prompt (0 when the Modelfile reproduces it)."""
    from models.export_modelfile import parse, render
    from models.export_predict import gguf_scores, gguf_texts
    from models.fresh_process import in_fresh_process

    mf = parse(modelfile.read_text(encoding="utf-8"))
    frame = ("", "") if prompt_input == "input" else None
    examples = [example_from_row(r) for r in rows]
    prompts = [render(mf.template, user_text(task, frame, r)) for r in rows]
    differ = sum(p != task.render_prompt(ex) for p, ex in zip(prompts, examples, strict=True))
    options = [task.label_options(ex) for ex in examples]
    labelled = [o for o in options if o is not None]
    n_ctx = max(int(mf.parameters.get("num_ctx", cfg.student.max_length + cfg.eval.max_new_tokens)), 512)
    doing = f"answering with {gguf.name}"
    if len(labelled) == len(options):
        scores = in_fresh_process(doing, gguf_scores, str(gguf), n_ctx, n_threads, dict(mf.parameters), prompts, labelled)
        answers = [task.extract(o[max(range(len(o)), key=s.__getitem__)], ex)
                   for o, s, ex in zip(labelled, scores, examples, strict=True)]
    else:
        budget = int(mf.parameters.get("num_predict", cfg.eval.max_new_tokens))
        texts = in_fresh_process(doing, gguf_texts, str(gguf), n_ctx, n_threads, dict(mf.parameters), prompts, budget,
                                 list(mf.stops))
        answers = [task.extract(t, ex) for t, ex in zip(texts, examples, strict=True)]
    return answers, differ


def roundtrip(store: Store, run_id: int, out_dir: Path, *, limit: int | None = None, n_threads: int | None = None,
              say: Callable[[str], None] | None = None) -> dict[str, dict[str, Any]]:
    """Agreement of every model export in out_dir with the run's predictions; saved into the manifest too."""
    from engine.tasks.registry import make_task

    say = say or (lambda _msg: None)
    out_dir = Path(out_dir)
    manifest = read_manifest(out_dir, run_id)
    if not manifest:
        raise StoreError(f"{out_dir}: no run-{run_id}-manifest.json; export the run first")
    cfg = RunConfig.model_validate(store.run(run_id).config)
    task = make_task(cfg.task)
    round_idx = best_round(store, run_id)
    rows, run_answers = held_out(store, run_id, round_idx, limit)
    results: dict[str, dict[str, Any]] = {}
    merged = out_dir / f"run-{run_id}-merged"
    if (merged / "config.json").is_file():
        say(f"merged model: {len(rows)} held-out prompts")
        results["merged"] = _figures(rows, run_answers, merged_answers(cfg, task, merged, rows, round_idx), task)
    modelfile = out_dir / f"run-{run_id}.Modelfile"
    for gguf in sorted(out_dir.glob(f"run-{run_id}-*.gguf")):
        if modelfile.is_file():
            kind = gguf.stem.removeprefix(f"run-{run_id}-")
            say(f"GGUF {kind}: {len(rows)} held-out prompts")
            answers, differ = gguf_answers(cfg, task, gguf, modelfile, manifest.get("prompt_input", "prompt"), rows, n_threads)
            results[f"gguf {kind}"] = _figures(rows, run_answers, answers, task, template_differs=differ)
    run_acc = sum(task.is_correct(a, example_from_row(r)) for r, a in zip(rows, run_answers, strict=True)) / len(rows)
    write_manifest(out_dir, run_id, round_idx, {}, {"roundtrip": {"run_accuracy": run_acc, **results}})
    return results
