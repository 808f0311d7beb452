"""Retrieval over an unlabeled pool (issue 32): build the BM25 index of 100k real-looking reviews and take the nearest
rows of 20 misses, as one pool round does; against rapidfuzz's token_set_ratio scan for one query.

    .venv/bin/python bench/bench_pool.py            # 100k rows from the demo's sentiment texts, recombined
    .venv/bin/python bench/bench_pool.py --rows 20000
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from importlib import resources
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.data.dedup import normalise  # noqa: E402
from engine.data.retrieval import BM25  # noqa: E402


def pool(rows: int, seed: int = 0) -> list[str]:
    """`rows` distinct texts: halves of two real reviews joined (the demo's 1,200 reviews give 1.4M such pairs)."""
    text = resources.files("engine").joinpath("demo_data/sentiment.jsonl").read_text(encoding="utf-8")
    reviews = [json.loads(line)["text"] for line in text.splitlines()]
    rng = random.Random(seed)
    out: set[str] = set()
    while len(out) < rows:
        a, b = rng.sample(reviews, 2)
        out.add(a[: len(a) // 2] + " " + b[len(b) // 2:])
    return sorted(out)


def main() -> None:
    """Time the index build and a round of 20 queries (k = 3 each), and one rapidfuzz scan for scale."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    texts = pool(args.rows)
    misses = random.Random(1).sample(texts, 20)
    t0 = time.perf_counter()
    index = BM25(texts)
    built = time.perf_counter() - t0
    t0 = time.perf_counter()
    found = [index.nearest(m, 3) for m in misses]
    queried = time.perf_counter() - t0
    assert all(texts[f[0]] == m for f, m in zip(found, misses, strict=True)), "each miss finds itself first"
    print(f"BM25 over {len(texts)} rows: index built in {built:.2f} s, 20 misses x 3 nearest in {queried:.2f} s; "
          f"a round: {built + queried:.2f} s")
    from rapidfuzz import fuzz, process

    keys = [normalise(t) for t in texts]
    t0 = time.perf_counter()
    process.extract(normalise(misses[0]), keys, scorer=fuzz.token_set_ratio, limit=3)
    print(f"rapidfuzz token_set_ratio, one query over {len(texts)} rows: {time.perf_counter() - t0:.2f} s")


if __name__ == "__main__":
    main()
