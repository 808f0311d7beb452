"""What makes two runs the same experiment, in one place: a sweep shares a finished twin instead of computing a cell
again, and `l2l merge` skips a run the target already holds. Both compare the resolved config without paths, the seed,
validation and test texts, and the teacher prompts' digest; the sweep takes runs from before a digest at their word."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from engine.config.schema import EXECUTION_ONLY
from engine.data.example_rows import content_hash
from engine.run.runs import Prepared
from engine.store.db import Store
from engine.store.transfer import SPLITS
from engine.tasks.prompt_templates import prompts_digest

DATA_FILES = ("seed", "validation", "test", "pool")


def config_without_paths(config: dict[str, Any], notes: dict[str, Any] | None = None) -> str:
    """A resolved config as canonical JSON without the store's and the data files' paths (a copied or moved project is
    the same experiment; the split texts are compared apart) and without the execution-only settings. data.unlabeled
    counts only where the run draws from it, and then by its texts' digest (in the run's data notes) when it has one."""
    data = {k: v for k, v in config.get("data", {}).items() if k not in DATA_FILES}
    if config.get("loop", {}).get("source") != "pool":
        data.pop("unlabeled", None)
    elif digest := _pool_digest(notes):
        data["unlabeled"] = digest
    doc = {**{k: v for k, v in config.items() if k != "store"}, "data": data}
    for section, key in EXECUTION_ONLY:
        doc[section] = {k: v for k, v in doc.get(section, {}).items() if k != key}
    return json.dumps(doc, sort_keys=True)


def _pool_digest(notes: dict[str, Any] | None) -> str | None:
    """The unlabeled pool's texts' digest in a run's data notes (None for runs from before digests)."""
    return ((notes or {}).get("unlabeled") or {}).get("digest")


def _before_pool_digests(notes: dict[str, Any]) -> dict[str, Any]:
    """Data notes as a run from before pool digests has them."""
    return {**notes, "unlabeled": {k: v for k, v in (notes.get("unlabeled") or {}).items() if k != "digest"}}


def finished_twin(store: Store, prepared: Prepared) -> int | None:
    """A finished run of the store with the same resolved config (wherever the store and data files were) and the
    same seed, validation and test texts: its results are this cell's (same seeds, same teacher cache), so it is
    shared instead of computed again. A run from before pool digests is compared by its pool's path; one made with
    other teacher prompts is no twin."""
    config = prepared.cfg.model_dump(mode="json")
    by_digest = config_without_paths(config, prepared.splits.notes)
    by_path = config_without_paths(config, _before_pool_digests(prepared.splits.notes))
    prompts = prompts_digest()
    wanted = {split: sorted(content_hash(ex) for ex in getattr(prepared.splits, split)) for split in SPLITS}
    for run_id in store.finished_runs_named(prepared.cfg.name):
        run = store.run(run_id)
        if config_without_paths(run.config, run.splits) != (by_digest if _pool_digest(run.splits) else by_path):
            continue
        if run.versions.get("prompts", prompts) != prompts:  # a run from before the digest is taken at its word
            continue
        if all(sorted(e.content_hash for e in store.examples(run_id, split=split)) == hashes
               for split, hashes in wanted.items()):
            return run_id
    return None


def fingerprint(config: dict[str, Any], notes: dict[str, Any], hashes: dict[str, list[str]], status: str,
                prompts: str | None = None) -> str:
    """What makes two runs the same run: the resolved config without paths (with the data notes that name the
    unlabeled pool's digest), the sorted content hashes of the seed, validation and test examples, the status, and
    the teacher prompts' digest (None for runs from before it)."""
    payload = json.dumps([config_without_paths(config, notes), {s: sorted(hashes.get(s, [])) for s in SPLITS}, status,
                          *([prompts] if prompts else [])], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()
