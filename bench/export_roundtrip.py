"""Round trip of a run's exports: export it, then ask each exported model the run's held-out prompts.

Merged model (transformers, predicted as the run predicts) and every GGUF (llama-cpp-python with the Modelfile's
template, stop strings and parameters) answer the validation and test prompts the run scored in its best round; the
figure is the share of answers equal to the run's own. On the tiny random model (tests/test_export.py) all agree;
this script gives the figure for a real student, e.g. the demo's:

    nice .venv/bin/python bench/export_roundtrip.py --store ~/.local/share/llm2llm/l2l.db --run 1 --out /tmp/run1-export \\
        [--quant q8_0 --quant q4_k_m] [--limit 300] [--threads 2] [--skip-export]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.export.check import roundtrip  # noqa: E402
from engine.export.run_export import PARTS, export_run, read_manifest  # noqa: E402
from engine.store.db import Store  # noqa: E402


def main() -> None:
    """Export (unless --skip-export), measure agreement, print a Markdown table and the JSON figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--run", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--quant", action="append", default=None, help="llama.cpp quantization (repeatable; default q8_0, q4_k_m)")
    parser.add_argument("--limit", type=int, default=None, help="held-out prompts to use (default: all)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--skip-export", action="store_true", help="measure an existing export folder")
    args = parser.parse_args()
    store = Store(args.store, create=False)
    started = time.perf_counter()
    if not args.skip_export:
        export_run(store, args.run, args.out, PARTS, quants=args.quant or ["q8_0", "q4_k_m"], say=print)
    exported = time.perf_counter()
    results = roundtrip(store, args.run, args.out, limit=args.limit, n_threads=args.threads, say=print)
    manifest = read_manifest(args.out, args.run)
    sizes = {f["path"]: f["size"] for f in manifest["files"]}
    print(f"\nrun {args.run}, round {manifest['round']}: export {exported - started:.0f}s, "
          f"check {time.perf_counter() - exported:.0f}s; run accuracy {100 * manifest['roundtrip']['run_accuracy']:.1f}%\n")
    print("| export | size | held-out prompts | same answer as the run | accuracy |")
    print("|---|---:|---:|---:|---:|")
    for name, r in results.items():
        file = f"run-{args.run}-merged/model.safetensors" if name == "merged" else f"run-{args.run}-{name.split()[-1]}.gguf"
        size = f"{sizes.get(file, 0) / 2**20:.0f} MiB"
        print(f"| {name} | {size} | {r['n']} | {100 * r['agreement']:.1f}% ({r['same']}) | {100 * r['accuracy']:.1f}% |")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
