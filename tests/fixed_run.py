"""One finished 2-round sentiment run written from fixed rows (real review texts, fixed predictions, teacher
examples with their lineage and rejection reasons): the snapshot tests render it, so no numeric change in torch or
llama.cpp can change what they show."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine.config.schema import resolve
from engine.data.example_rows import example_row
from engine.store.db import Store
from engine.tasks.base import Example

FIXTURES = Path(__file__).parent / "fixtures"

# (text, label, parent seed index, status, reason) the teacher wrote in round 0
SYNTHETIC = [
    ("A quietly devastating film that earns every one of its tears.", "positive", 0, "kept", None),
    ("Clumsy, loud and far too long for its thin story.", "negative", 1, "kept", None),
    ("The reviewer loved the film's humor and performances.", "positive", 0, "rejected", "meta_text"),
    ("It sounds like a disaster on paper, yet every risky turn lands.", "positive", 2, "kept", None),
    ("A cold, dull film with nothing to say.", "negative", 2, "rejected", "label_mismatch"),
    ("Charming in places, but mostly a chore to sit through.", "negative", 3, "rejected", "label_disagrees"),
]
SEED_CORRECT = ([0, 0, 1, 0, 1, 1, 1, 1], [1, 0, 1, 1, 1, 1, 1, 1])  # per round, seed examples in order
VAL_CORRECT = ([1, 0, 1, 1, 0, 1], [1, 1, 1, 1, 0, 1])
TEST_CORRECT = ([1, 1, 0, 1, 0, 1], [1, 1, 1, 1, 0, 1])


def config_doc(store: Path) -> dict[str, Any]:
    """The run's config: the tiny test run's shape, with model names instead of files."""
    return {"name": "fixed", "seed": 7, "store": str(store), "task": {"preset": "rotten_tomatoes"},
            "data": {"pool": str(FIXTURES / "rotten_tomatoes_20.jsonl"), "seed_size": 8, "validation_size": 6,
                     "test_size": 6, "split_seed": 1},
            "student": {"model": "student.gguf", "max_length": 256}, "teacher": {"model": "teacher.gguf"},
            "loop": {"rounds": 2, "examples_per_miss": 2}}


def build_run_store(path: Path) -> tuple[Path, int]:
    """Write the run into a new store at `path`; returns (path, run id)."""
    rows = [json.loads(line) for line in (FIXTURES / "rotten_tomatoes_20.jsonl").read_text(encoding="utf-8").splitlines()]
    examples = [Example(input=r["text"], target=" " + r["label"], answer=r["label"]) for r in rows]
    cfg = resolve(config_doc(path))
    store = Store(path)
    with store.transaction():
        run_id = store.create_run(cfg.name, cfg.to_json(), cfg.digest(), cfg.seed, {"llm2llm": "fixed"}, {"cpu_count": 2}, {})
        split_of = ["seed"] * 8 + ["validation"] * 6 + ["test"] * 6
        ids = store.insert_examples([example_row(run_id, split, ex) for split, ex in zip(split_of, examples)])
        seeds, val, test = ids[:8], ids[8:14], ids[14:]
        kept = 0
        for text, label, parent, status, reason in SYNTHETIC:
            ex = Example(input=text, target=" " + label, answer=label,
                         meta={"requested_label": examples[parent].answer, "what_made_it_hard": "praise hidden in a complaint"})
            (sid,) = store.insert_examples([example_row(run_id, "synthetic", ex, status=status, origin_round=0,
                                                        parent_id=seeds[parent], teacher_call=f"call-{parent}")])
            if reason:
                store.set_example_status(sid, status, reason)
            kept += status == "kept"
        for idx in (0, 1):
            preds = []
            for group, correct in ((seeds, SEED_CORRECT[idx]), (val, VAL_CORRECT[idx]), (test, TEST_CORRECT[idx])):
                for eid, ok in zip(group, correct):
                    label = examples[ids.index(eid)].answer
                    said = label if ok else ("negative" if label == "positive" else "positive")
                    preds.append({"run_id": run_id, "round": idx, "example_id": eid,
                                  "split": store.example(eid).split, "output": " " + said, "extracted": said,
                                  "correct": ok, "confidence": 0.9 if ok else 0.6})
            store.insert_predictions(preds)
            train = {"seconds": 12.0, "wall_seconds": 12.5, "steps": 2 + idx, "label_mix": {"negative": 4, "positive": 4 + 2 * idx}}
            phases: dict[str, Any] = {"train": train, "eval": {"seconds": 3.0, "wall_seconds": 3.1,
                                                                 "validation_answers": {"positive": 4, "negative": 2}}}
            misses = SEED_CORRECT[idx].count(0)
            fields: dict[str, Any] = {}
            if idx == 0:
                phases["augment"] = {"seconds": 40.0, "wall_seconds": 40.2, "requests": 3, "examples_requested": 6}
                phases["filter"] = {"seconds": 4.0, "wall_seconds": 4.0, "verify_calls": 4,
                                    "reasons": {"meta_text": 1, "label_mismatch": 1, "label_disagrees": 1}, "flags": {}}
                fields = {"generated": len(SYNTHETIC), "kept": kept, "rejected": len(SYNTHETIC) - kept}
            store.upsert_round(run_id, idx, phase="done", train_size=8 + (kept if idx else 0),
                               seed_acc=sum(SEED_CORRECT[idx]) / 8, val_acc=sum(VAL_CORRECT[idx]) / 6,
                               test_acc=sum(TEST_CORRECT[idx]) / 6, misses=misses, train_loss=1.2 - 0.4 * idx,
                               adapter_path=f"runs/{run_id}/round-{idx}/adapter", phases=phases, **fields)
        store.update_run(run_id, status="finished", best_round=1, ended=store.run(run_id).created,
                         plan={"mode": "lora-fp32", "device": "cpu", "reason": "no CUDA GPU: LoRA in fp32 on the CPU"})
        for message, kind in (("run 1 started", "status"), ("round 0: 3 misses", "phase"),
                              ("round 0: kept 3 of 6 new examples (1 meta_text, 1 label_mismatch, 1 label_disagrees)", "phase"),
                              ("best round on validation: 1", "status"), ("run finished", "status")):
            store.log(run_id, message, kind=kind)
    store.close()
    return path, run_id
