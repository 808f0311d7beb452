"""Rows → validated Examples → seed / validation / test splits (deterministic, recorded in notes).

Every row of every named file is validated before anything is written; the first bad row is named by file and line.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.config.schema import DataConfig, RunConfig
from engine.data.dedup import normalise
from engine.data.readers import Rows, load_rows
from engine.tasks.base import Example, Task
from engine.tasks.common import RowProblem, fill_template, named_fields, raw_key, split_template
from models.errors import ConfigError, DataError


@dataclass
class Splits:
    """The examples of a run by split, and how they were made (files, draws, row indices)."""

    seed: list[Example]
    validation: list[Example]
    test: list[Example]
    notes: dict[str, Any] = field(default_factory=dict)


# --- rows → examples ----------------------------------------------------------------------------------------
def _present(row: dict[str, Any]) -> str:
    names = [k for k, v in row.items() if v is not None and v != ""]
    return ", ".join(names) if names else "none"


def _value(row: dict[str, Any], name: str, hint: str | None) -> Any:
    value = row.get(name)
    if value is None:
        extra = f"; {hint}" if hint else ""
        raise RowProblem(f"field '{name}' missing (fields present: {_present(row)}){extra}")
    return value


def _text(row: dict[str, Any], name: str, hint: str | None) -> str:
    value = _value(row, name, hint)
    if isinstance(value, (list, dict)):
        raise RowProblem(f"field '{name}' is a {type(value).__name__}, expected text")
    text = raw_key(value) if not isinstance(value, str) else value.strip()
    if not text:
        raise RowProblem(f"field '{name}' is empty")
    return text


def _natural(name: str) -> tuple[Any, ...]:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))


def _choices(row: dict[str, Any], spec: str, hint: str | None) -> list[str]:
    """Options from a list field ('endings'), comma-separated fields ('holding_0,holding_1') or a prefix ('holding_*')."""
    if "," in spec:
        names = [n.strip() for n in spec.split(",") if n.strip()]
    elif spec.endswith("*"):
        names = sorted((k for k in row if k.startswith(spec[:-1]) and row[k] is not None), key=_natural)
        if not names:
            raise RowProblem(f"no fields named {spec!r} (fields present: {_present(row)})")
    else:
        value = _value(row, spec, hint)
        if not isinstance(value, list):
            raise RowProblem(f"field '{spec}' is {type(value).__name__}, expected a list of options")
        options = [raw_key(v) if not isinstance(v, str) else v.strip() for v in value]
        for i, option in enumerate(options):
            if not option:
                raise RowProblem(f"field '{spec}' option {i} is empty")
        return options
    return [_text(row, name, hint) for name in names]


def input_text(row: dict[str, Any], task: Task, data_cfg: DataConfig, first: bool) -> str:
    """The example's input: data.input_field's value, or the fields the prompt names composed as the prompt shows them."""
    composed, _ = split_template(task.template)
    if composed is None:
        return _text(row, data_cfg.input_field, "data.input_field names the text field" if first else None)
    values = {name: _text(row, name, f"task.prompt names {{{name}}}" if first else None) for name in named_fields(composed)}
    return fill_template(composed, **values).strip()


def _example(row: dict[str, Any], task: Task, data_cfg: DataConfig, first: bool) -> Example:
    text = input_text(row, task, data_cfg, first)
    target: Any = _value(row, data_cfg.target_field, "data.target_field names the answer field" if first else None)
    if isinstance(target, str):
        target = target.strip()
        if not target:
            raise RowProblem(f"field '{data_cfg.target_field}' is empty")
    if data_cfg.label_map and not isinstance(target, (list, dict)):
        target = data_cfg.label_map.get(raw_key(target), target)
    choices = None
    if task.kind == "multiple_choice" and data_cfg.choices_field:
        choices = _choices(row, data_cfg.choices_field, "data.choices_field names the options" if first else None)
    build = getattr(task, "example_from_fields", None)
    if build is None:
        raise TypeError(f"task kind {task.kind!r} cannot build examples from rows (no example_from_fields)")
    return build(text, target, choices, data_cfg)


def to_examples(rows: Sequence[dict[str, Any]], task: Task, data_cfg: DataConfig, path: Path) -> list[Example]:
    """Every row validated and converted; DataError with the first bad row's place and reason (+ how many more)."""
    where = rows.where if isinstance(rows, Rows) else (lambda i: f"{path}:row {i + 1}")
    out: list[Example] = []
    problems: list[str] = []
    for i, row in enumerate(rows):
        try:
            ex = _example(row, task, data_cfg, first=i == 0)
        except RowProblem as err:
            problems.append(f"{where(i)}: {err}")
            continue
        ex.meta["row"] = i
        out.append(ex)
    refuse_bad_rows(problems)
    return out


def refuse_bad_rows(problems: list[str]) -> None:
    """One DataError naming the first bad row's place and reason, and how many more there are (none: nothing)."""
    if problems:
        more = f" (and {len(problems) - 1} more bad row{'s' if len(problems) > 2 else ''})" if len(problems) > 1 else ""
        raise DataError(problems[0] + more)


# --- splits -------------------------------------------------------------------------------------------------
def balanced_draw(indices: Sequence[int], labels: Mapping[int, str], n: int, rng: random.Random) -> list[int]:
    """n of `indices` (already in random order) taken round-robin over labels, so every label gets its share
    (labels that run out leave their share to the others)."""
    queues: dict[str, list[int]] = {}
    for i in indices:
        queues.setdefault(labels[i], []).append(i)
    order = sorted(queues)
    rng.shuffle(order)
    picked: list[int] = []
    position = {label: 0 for label in order}
    while len(picked) < n:
        progressed = False
        for label in order:
            if len(picked) >= n:
                break
            if position[label] < len(queues[label]):
                picked.append(queues[label][position[label]])
                position[label] += 1
                progressed = True
        if not progressed:
            break
    return picked


def _label_counts(examples: list[Example]) -> dict[str, int]:
    return dict(sorted(Counter(ex.answer for ex in examples).items()))


def _overlap(a: list[Example], b: list[Example]) -> int:
    keys = {normalise(ex.input) for ex in a}
    return sum(1 for ex in b if normalise(ex.input) in keys)


def load_splits(cfg: RunConfig, task: Task) -> Splits:
    """Seed / validation / test examples: from their files, or drawn from data.pool (else the seed file) with
    data.split_seed — test first, then validation, then seed (balanced by label for classification).

    notes['sources'][split] names the file each split came from and notes['indices'][split] its 0-based row
    numbers in that file ('all' when the whole file was used)."""
    d = cfg.data
    if task.kind == "multiple_choice" and not d.choices_field:
        raise ConfigError("data.choices_field: required for multiple_choice (a list field such as 'endings', "
                          "comma-separated fields such as 'holding_0,holding_1,...', or a prefix such as 'holding_*')")
    if d.seed is None and d.pool is None:
        raise ConfigError("data.seed or data.pool: required (a .jsonl, .csv, .parquet, .json or .label file)")
    cache: dict[Path, list[Example]] = {}

    def examples_of(path: Path) -> list[Example]:
        if path not in cache:
            cache[path] = to_examples(load_rows(path), task, d, path)
        return cache[path]

    # Validate every named file before drawing anything.
    given = {name: examples_of(getattr(d, name)) for name in ("seed", "validation", "test") if getattr(d, name) is not None}
    warnings: list[str] = []
    # rows of the validation / test files never train: kept out of the seed (and of a pool it is drawn from); the seed
    # file itself named as validation or test is taken as meant (a smoke test), with a warning
    same = [name for name in ("validation", "test") if name in given and getattr(d, name) == d.seed]
    if same:
        warnings.append(f"data.{' and data.'.join(same)} {'is' if len(same) == 1 else 'are'} the seed file: "
                        f"{' and '.join(same)} scores are measured on the training rows")
    eval_keys: dict[str, set[str]] = {name: {normalise(ex.input) for ex in given[name]} for name in ("validation", "test")
                 if name in given and name not in same}
    seed_filtered = False
    if "seed" in given and eval_keys:
        kept, where = _outside(given["seed"], eval_keys)
        if len(kept) < len(given["seed"]):
            if not kept:
                raise DataError(f"{d.seed}: every seed row is also in the {' and '.join(where)} set; nothing is left to train on")
            warnings.append(_kept_out(d.seed, len(given["seed"]) - len(kept), where))
            given["seed"], seed_filtered = kept, True
    rng = random.Random(d.split_seed)
    # a sweep's seed sets redraw the seed examples alone; validation and test keep split_seed's draw
    seed_rng = rng if d.seed_draw is None else random.Random(d.seed_draw)
    notes: dict[str, Any] = {"split_seed": d.split_seed, "seed_draw": d.seed_draw,
                             "files": {name: str(getattr(d, name)) for name in ("seed", "validation", "test", "pool")
                                       if getattr(d, name) is not None},
                             "sources": {}, "indices": {}}
    out: dict[str, list[Example]] = {}
    for name in ("validation", "test"):
        if name in given:
            out[name] = given[name]
            notes["sources"][name] = str(getattr(d, name))
            notes["indices"][name] = "all"

    missing = [name for name in ("test", "validation") if name not in given]
    seed_from_pool = "seed" not in given or (d.pool is None and bool(missing))
    if missing or "seed" not in given:
        pool_path = d.pool if d.pool is not None else d.seed
        assert pool_path is not None
        pool = examples_of(pool_path)
        notes["drawn_from"] = str(pool_path)
        candidates = list(range(len(pool)))
        if "seed" in given and d.pool is not None and pool_path != d.seed:
            seed_keys = {normalise(ex.input) for ex in given["seed"]}
            fresh = [i for i in candidates if normalise(pool[i].input) not in seed_keys]
            notes["pool_rows_dropped_as_seed_duplicates"] = len(candidates) - len(fresh)
            candidates = fresh
        seen: set[str] = set()
        unique = []
        for i in candidates:  # a text repeated in the pool could land in seed and test at once
            key = normalise(pool[i].input)
            if key not in seen:
                seen.add(key)
                unique.append(i)
        notes["pool_rows_dropped_as_repeats"] = len(candidates) - len(unique)
        candidates = unique
        if eval_keys and seed_from_pool:
            outside, where = _outside([pool[i] for i in candidates], eval_keys)
            dropped = len(candidates) - len(outside)
            if dropped:
                keep = {id(ex) for ex in outside}
                candidates = [i for i in candidates if id(pool[i]) in keep]
                notes["pool_rows_dropped_as_eval_duplicates"] = dropped
                warnings.append(_kept_out(pool_path, dropped, where))
        sizes = {"test": d.test_size, "validation": d.validation_size}
        wanted = sum(sizes[name] for name in missing) + ((d.seed_size or 1) if seed_from_pool else 0)
        if wanted > len(candidates):
            parts = [f"{name}_size {sizes[name]}" for name in missing]
            if seed_from_pool:
                parts.insert(0, f"seed_size {d.seed_size}" if d.seed_size else "at least 1 seed row")
            raise DataError(f"{pool_path}: {len(candidates)} usable rows, but {' + '.join(parts)} = {wanted} were "
                            "requested; lower data.validation_size / data.test_size or give those files")
        rng.shuffle(candidates)
        start = 0
        for name in missing:  # test first: its rows do not depend on the other sizes
            chosen = candidates[start:start + sizes[name]]
            start += sizes[name]
            out[name] = [pool[i] for i in sorted(chosen)]
            notes["sources"][name] = str(pool_path)
            notes["indices"][name] = sorted(chosen)
        if seed_from_pool:
            rest = candidates[start:]
            if d.seed_draw is not None:
                seed_rng.shuffle(rest)
            chosen = _draw_seed(rest, pool, d.seed_size, task, seed_rng)
            out["seed"] = [pool[i] for i in sorted(chosen)]
            notes["sources"]["seed"] = str(pool_path)
            notes["indices"]["seed"] = sorted(chosen)
    if "seed" not in out:
        seed = given["seed"]
        notes["sources"]["seed"] = str(d.seed)
        if d.seed_size is not None and d.seed_size < len(seed):
            chosen = _draw_seed(list(seed_rng.sample(range(len(seed)), len(seed))), seed, d.seed_size, task, seed_rng)
            out["seed"] = [seed[i] for i in sorted(chosen)]
            notes["indices"]["seed"] = sorted(seed[i].meta["row"] for i in chosen)
        else:
            out["seed"] = seed
            notes["indices"]["seed"] = [ex.meta["row"] for ex in seed] if seed_filtered else "all"
    if d.pool is not None and not missing and "seed" in given:
        notes["pool_unused"] = True
    splits = Splits(seed=out["seed"], validation=out["validation"], test=out["test"], notes=notes)
    notes["sizes"] = {name: len(getattr(splits, name)) for name in ("seed", "validation", "test")}
    if task.kind in ("classification", "multiple_choice"):
        notes["label_counts"] = {name: _label_counts(getattr(splits, name)) for name in ("seed", "validation", "test")}
    notes["input_overlap"] = {"seed~validation": _overlap(splits.seed, splits.validation),
                              "seed~test": _overlap(splits.seed, splits.test),
                              "validation~test": _overlap(splits.validation, splits.test)}
    if warnings:
        notes["warnings"] = warnings
    return splits


def _outside(examples: list[Example], eval_keys: dict[str, set[str]]) -> tuple[list[Example], list[str]]:
    """The examples whose input is in none of the evaluation sets, and the sets the others were found in."""
    kept, where = [], []
    for ex in examples:
        key = normalise(ex.input)
        hits = [name for name, keys in eval_keys.items() if key in keys]
        if hits:
            where += [h for h in hits if h not in where]
        else:
            kept.append(ex)
    return kept, [name for name in eval_keys if name in where]


def _kept_out(path: Path | None, n: int, where: list[str]) -> str:
    """The warning for seed rows that overlap the evaluation sets."""
    rows = f"{n} row{'s' if n != 1 else ''}"
    sets = f"{' and '.join(where)} set{'s' if len(where) > 1 else ''}"
    return f"{path}: {rows} also in the {sets} {'were' if n != 1 else 'was'} kept out of the seed"


def _draw_seed(order: list[int], examples: list[Example], n: int | None, task: Task, rng: random.Random) -> list[int]:
    """Seed row indices: all of `order` when n is None, else n of them (label-balanced for classification)."""
    if n is None or n >= len(order):
        return list(order)
    if task.kind == "classification":
        return balanced_draw(order, {i: examples[i].answer for i in order}, n, rng)
    return order[:n]
