"""Export a run: its final training set as JSONL and the best round's adapter (with the resolved config)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from models.errors import StoreError
from engine.store import Store


def final_training_set(store: Store, run_id: int) -> list[dict]:
    """Seed examples plus every kept synthetic example, with lineage fields."""
    rows = store.examples(run_id, split="seed") + store.examples(run_id, split="synthetic", status="kept")
    return [{"id": r["id"], "split": r["split"], "input": r["input"], "target": r["target"], "answer": r["answer"],
             **({"choices": r["choices"]} if r["choices"] else {}), "origin_round": r["origin_round"],
             "parent_id": r["parent_id"]} for r in rows]


def export_run(store: Store, run_id: int, out_dir: Path) -> dict[str, Path]:
    """Write `run-<id>-train.jsonl` and `run-<id>-adapter/` into out_dir; returns what was written."""
    run = store.run(run_id)
    best = run.get("best_round")
    if best is None:
        rounds = [r for r in store.rounds(run_id) if r["adapter_path"]]
        if not rounds:
            raise StoreError(f"run {run_id} has no trained round yet: nothing to export")
        best = rounds[-1]["idx"]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data_path = out_dir / f"run-{run_id}-train.jsonl"
    tmp = data_path.with_suffix(".jsonl.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for row in final_training_set(store, run_id):
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(data_path)
    written = {"training set": data_path}
    adapter = store.round(run_id, best)["adapter_path"]
    if adapter and Path(adapter).exists():
        target = out_dir / f"run-{run_id}-adapter"
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(adapter, target)
        config = Path(adapter).parent / "config.toml"
        if config.exists():
            shutil.copy2(config, target / "l2l-config.toml")
        written[f"adapter (round {best})"] = target
    return written
