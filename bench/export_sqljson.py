"""A measured alternative for `l2l export`'s training-set files, not adopted: SQLite's json_object writes each row's
three JSON lines in C (rows, prompt/completion, chat). Checks that its files equal the product's byte for byte, then
times both, alternating. It renders the prompt as before || input || after, so it holds only for tasks whose prompt
is a frame around the input (not multiple choice) and whose completion is " " + answer (classification).

    python bench/export_sqljson.py --store /tmp/scale/l2l.db --run 1 [--repeat 3]
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.config.schema import RunConfig  # noqa: E402
from engine.export.run_export import export_run  # noqa: E402
from engine.store.db import Store  # noqa: E402
from engine.tasks.common import fill_template  # noqa: E402
from engine.tasks.registry import make_task  # noqa: E402

_LINEAGE = ("'id', id, 'split', split, 'parent_id', parent_id, 'origin_round', origin_round, "
            "'teacher_call', teacher_call, 'answer', answer")
_LINES = (
    "json_object('id', id, 'split', split, 'input', input, 'target', target, 'answer', answer, "
    "'origin_round', origin_round, 'parent_id', parent_id, 'teacher_call', teacher_call)",
    f"json_object('prompt', ?1 || input || ?2, 'completion', ' ' || answer, {_LINEAGE})",
    "json_object('messages', json_array(json_object('role', 'user', 'content', ?1 || input || ?2), "
    f"json_object('role', 'assistant', 'content', ' ' || answer)), {_LINEAGE})",
)
_SUFFIXES = ("-train.jsonl", "-train.prompt-completion.jsonl", "-train.chat.jsonl")


def frame(store: Store, run_id: int) -> tuple[str, str]:
    """The text before and after the input in the run's prompts."""
    task = make_task(RunConfig.model_validate(store.run(run_id).config).task)
    marker = "\x00INPUT\x00"
    before, after = fill_template(task.prompt_template, input=marker).split(marker)
    return before, after


def sql_files(db_path: Path, run_id: int, before: str, after: str, out: Path) -> list[Path]:
    """The three files from one query per split (seed rows, then kept synthetic rows, each in id order)."""
    db = sqlite3.connect(db_path)
    columns: list[list[str]] = [[], [], []]
    for where in ("split = 'seed'", "split = 'synthetic' AND status = 'kept'"):
        sql = f"SELECT {', '.join(_LINES)} FROM examples WHERE run_id = ?3 AND {where} ORDER BY id"
        for row in db.execute(sql, [before, after, run_id]):
            for column, line in zip(columns, row, strict=True):
                column.append(line)
    db.close()
    paths = []
    for suffix, lines in zip(_SUFFIXES, columns, strict=True):
        path = out / f"run-{run_id}{suffix}"
        path.write_bytes(("\n".join(lines) + "\n").encode())
        paths.append(path)
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--run", type=int, required=True)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    store = Store(args.store)
    before, after = frame(store, args.run)
    with tempfile.TemporaryDirectory() as tmp:
        product, prototype = Path(tmp) / "product", Path(tmp) / "sql"
        prototype.mkdir()
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            export_run(store, args.run, product, parts=("data",))
            t1 = time.perf_counter()
            paths = sql_files(args.store, args.run, before, after, prototype)
            t2 = time.perf_counter()
            print(f"product {t1 - t0:.2f} s   json_object {t2 - t1:.2f} s")
        same = [p.read_bytes() == (product / p.name).read_bytes() for p in paths]
        print("byte-identical:", dict(zip(_SUFFIXES, same, strict=True)))


if __name__ == "__main__":
    main()
