"""Data files → rows (dicts), each file parsed once, each row knowing its place ('file:line 3') for error messages.

Formats: .jsonl (one JSON object a line), .json (an array of objects, or the SNIPS benchmark layout
{"Intent": [{"data": [{"text": ...}, ...]}, ...]} → fields text, label), .csv (header row, every value read as
text), .parquet (read with `datasets`), and .label (TREC's original 'DESC:manner How did ...' lines → fields text,
coarse_label 'DESC', fine_label 'DESC:manner').
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from models.errors import DataError

SUFFIXES = (".jsonl", ".json", ".csv", ".parquet", ".label")
ID_FIELDS = ("id", "idx")  # a row's identity, when the file has one


class Rows(list):
    """The rows of one file (dicts), each with where it came from ('line 3', 'row 3')."""

    def __init__(self, rows: Iterable[dict[str, Any]], path: Path, places: Sequence[str] | None = None) -> None:
        super().__init__(rows)
        self.path = path
        self.places = list(places) if places is not None and len(places) == len(self) else [f"row {i + 1}" for i in range(len(self))]

    def where(self, i: int) -> str:
        """'file:line N' (or 'file:row N') of row i."""
        return f"{self.path}:{self.places[i]}"


def _utf8(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise DataError(f"{path}: not UTF-8 at line {line} (byte {err.start}: 0x{data[err.start]:02x}); "
                        "save the file as UTF-8") from None


def _datasets_load(kind: str, path: Path, **kwargs: Any) -> list[dict[str, Any]]:
    """Rows read by `datasets`, cached in a throw-away folder (nothing left in the user's cache)."""
    import datasets

    datasets.disable_progress_bars()
    with tempfile.TemporaryDirectory(prefix="l2l-data-") as cache:
        try:
            ds = datasets.load_dataset(kind, data_files=str(path), split="train", cache_dir=cache, keep_in_memory=True, **kwargs)
        except Exception as err:  # datasets' own messages are long; keep the first line
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise DataError(f"{path}: could not be read as {kind} ({first[:300]})") from None
        return ds.to_list()


def _read_jsonl(path: Path, text: str) -> Rows:
    rows, places = [], []
    for number, line in enumerate(text.split("\n"), start=1):  # not splitlines(): JSON strings may hold U+2028
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:line {number}: not valid JSON ({err.msg} at column {err.colno})") from None
        except RecursionError:
            raise DataError(f"{path}:line {number}: JSON nested too deeply") from None
        if not isinstance(value, dict):
            raise DataError(f"{path}:line {number}: expected a JSON object {{...}}, got {type(value).__name__}")
        _valid_text(value, f"{path}:line {number}")
        rows.append(value)
        places.append(f"line {number}")
    return Rows(rows, path, places)


def _read_json(path: Path, text: str) -> Rows:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"{path}:line {err.lineno}: not valid JSON ({err.msg} at column {err.colno})") from None
    except RecursionError:
        raise DataError(f"{path}: JSON nested too deeply") from None
    if isinstance(value, dict) and value and all(_is_snips_list(v) for v in value.values()):
        rows, places = [], []
        for intent, items in value.items():
            for j, item in enumerate(items, start=1):
                rows.append({"text": "".join(str(chunk.get("text", "")) for chunk in item["data"]).strip(), "label": intent})
                places.append(f"{intent} item {j}")
        return Rows(rows, path, places)
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise DataError(f"{path}: expected a JSON array of objects (or use .jsonl, one object per line)")
    for i, item in enumerate(value):
        _valid_text(item, f"{path}:item {i + 1}")
    return Rows(value, path, [f"item {i + 1}" for i in range(len(value))])


def _valid_text(value: Any, where: str) -> None:
    """JSON may escape half of a UTF-16 pair ("\\ud800"): such a string is no text and cannot be stored."""
    if isinstance(value, str):
        bad = next((ch for ch in value if "\ud800" <= ch <= "\udfff"), None)
        if bad is not None:
            raise DataError(f"{where}: text holds an unpaired surrogate \\u{ord(bad):04x} (not valid Unicode)")
    elif isinstance(value, dict):
        for item in [*value.keys(), *value.values()]:
            _valid_text(item, where)
    elif isinstance(value, list):
        for item in value:
            _valid_text(item, where)


def _is_snips_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, dict) and isinstance(v.get("data"), list)
                                           and all(isinstance(chunk, dict) for chunk in v["data"]) for v in value)


def _read_csv(path: Path, text: str) -> Rows:
    records = csv.reader(io.StringIO(text))
    try:
        header = next(records)
    except StopIteration:
        return Rows([], path)
    except csv.Error as err:
        raise DataError(f"{path}:line 1: not valid CSV ({err})") from None
    if len(set(header)) != len(header):
        raise DataError(f"{path}:line 1: the header needs distinct column names (got {header})")
    header = [name if name.strip() else f"Unnamed: {i}" for i, name in enumerate(header)]  # pandas' name for a blank one
    rows, places, previous = [], [], records.line_num
    try:
        for record in records:
            if record:
                if len(record) > len(header):
                    raise DataError(f"{path}:line {previous + 1}: {len(record)} values but {len(header)} columns")
                # every value as text ('0' stays '0', 'NA' stays 'NA'); a short row's missing values are None
                rows.append(dict(zip(header, record + [None] * (len(header) - len(record)), strict=True)))
                places.append(f"line {previous + 1}")
            previous = records.line_num
    except csv.Error as err:
        raise DataError(f"{path}:line {records.line_num}: not valid CSV ({err})") from None
    return Rows(rows, path, places)


def _read_trec(path: Path, data: bytes) -> Rows:
    # TREC's files hold one stray non-ASCII byte ('sister\xf0city'); Hugging Face's loader replaces it by a space too.
    text = _utf8(path, data.replace(b"\xf0", b" "))
    rows, places = [], []
    for number, line in enumerate(text.split("\n"), start=1):  # not splitlines(): JSON strings may hold U+2028
        if not line.strip():
            continue
        label, _, question = line.strip().partition(" ")
        coarse, colon, _fine = label.partition(":")
        if not colon or not coarse.isupper() or not question.strip():
            raise DataError(f"{path}:line {number}: expected 'COARSE:fine question' (e.g. 'DESC:manner How did ...'), "
                            f"got {line[:60]!r}")
        rows.append({"text": question.strip(), "coarse_label": coarse, "fine_label": label})
        places.append(f"line {number}")
    return Rows(rows, path, places)


def load_rows(path: Path) -> Rows:
    """All rows of a .jsonl/.json/.csv/.parquet/.label file as dicts; DataError naming file and line when unusable."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if not path.is_file():
        raise DataError(f"{path}: not a file")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(f"{path}: unsupported file type {suffix or '(none)'!r} (use {', '.join(SUFFIXES)})")
    if suffix == ".parquet":
        rows = Rows(_datasets_load("parquet", path), path)
    else:
        data = path.read_bytes()
        if suffix == ".label":
            rows = _read_trec(path, data)
        else:
            text = _utf8(path, data).removeprefix("\ufeff")
            reader = {".jsonl": _read_jsonl, ".json": _read_json, ".csv": _read_csv}[suffix]
            rows = reader(path, text)
    if not rows:
        raise DataError(f"{path}: no rows")
    _check_ids(rows)
    return rows


def _check_ids(rows: Rows) -> None:
    """The first of ID_FIELDS the rows carry must name each row once: a repeated id is a file joined twice or a bad
    export, and would let one example sit in two splits."""
    for name in ID_FIELDS:
        if not any(name in row for row in rows):
            continue
        seen: dict[str, int] = {}
        for i, row in enumerate(rows):
            value = row.get(name)
            if value is None or value == "":
                continue
            key = json.dumps(value, sort_keys=True, default=str)
            if key in seen:
                raise DataError(f"{rows.where(i)}: {name} {value!r} repeats the {name} of {rows.places[seen[key]]}; "
                                f"each row's {name} must be unique")
            seen[key] = i
        return
