"""`python -m engine.export.dataset_save FOLDER`: training rows as JSON lines on stdin, an empty line when they are all sent,
saved by `datasets` as FOLDER (a DatasetDict with one split, train).

It runs as a child of the export: importing `datasets` imports pandas, which `l2l export --only data` keeps out of its
own process (tests/test_cli.py). A stream that ends without the empty line (the export was killed) saves nothing.
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

# column -> (type, meaning); the dataset card lists them
COLUMNS: dict[str, tuple[str, str]] = {
    "id": ("int64", "the example's id in the store"),
    "origin": ("string", "seed, teacher, pool, oracle or eda (see Origins)"),
    "round": ("int64", "the round that added the row; empty for seeds"),
    "parent_id": ("int64", "id of the example the row was made from; empty for seeds"),
    "teacher_call": ("string", "key of the teacher call that wrote the row, or verified a pool row (the store's teacher_calls table); empty otherwise"),
    "input": ("string", "the example's text"),
    "target": ("string", "the response the student learned to write"),
    "answer": ("string", "the gold answer it is scored on (label, number, option letter)"),
    "choices": ("list of string", "a multiple-choice question's options; empty otherwise"),
    "prompt": ("string", "the student's prompt as trained: the task's template around the input"),
    "completion": ("string", "the text that followed the prompt in training"),
}
END = b"\n"  # the line that says every row was sent
INCOMPLETE = 3  # exit status of a stream that ended without END


def features() -> Any:
    """The dataset's columns as `datasets` Features."""
    from datasets import Features, Value

    return Features({name: [Value("string")] if kind == "list of string" else Value(kind) for name, (kind, _) in COLUMNS.items()})


def save(lines: Iterable[bytes], folder: Path) -> bool:
    """Rows from JSON lines into an Arrow file (system temp), then `save_to_disk` into folder; False, with nothing
    saved, when the lines end before END. The fingerprint is the content's, so the same rows give the same files."""
    import orjson
    from datasets import Dataset, DatasetDict, DatasetInfo, Split
    from datasets.arrow_writer import ArrowWriter
    from datasets.table import MemoryMappedTable
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()
    digest = hashlib.sha256()
    complete = False
    with tempfile.TemporaryDirectory(prefix="l2l-dataset-") as scratch:
        raw = str(Path(scratch) / "train.arrow")
        writer = ArrowWriter(features=features(), path=raw, writer_batch_size=256)  # rows held: one batch
        try:
            for line in lines:
                if line == END:
                    complete = True
                    break
                digest.update(line)
                writer.write(orjson.loads(line))
            writer.finalize()
        finally:
            writer.close()
        if not complete:
            return False
        train = Dataset(MemoryMappedTable.from_file(raw), info=DatasetInfo(features=features()), split=Split.TRAIN,
                        fingerprint=digest.hexdigest()[:16])
        DatasetDict({"train": train}).save_to_disk(str(folder))
        del train
    return True


if __name__ == "__main__":
    sys.exit(0 if save(sys.stdin.buffer, Path(sys.argv[1])) else INCOMPLETE)
