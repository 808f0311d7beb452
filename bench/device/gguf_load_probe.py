"""Which load of a GGUF dies in a CUDA build of llama-cpp-python: each (GGUF, load settings) in its own process with
llama.cpp's own log on (verbose), faulthandler on, and markers after import, load and one eval; everything each child
printed goes to one log file so the dying step shows.

    python bench/device/gguf_load_probe.py OUT_DIR [EXTRA.gguf ...]
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

sys.path[:0] = ["."]

from models.random_gguf import write_random_llama_gguf  # noqa: E402

CHILD = """
import json, sys
print("start", flush=True)
import llama_cpp
print("imported", flush=True)
path, kwargs = sys.argv[1], json.loads(sys.argv[2])
llm = llama_cpp.Llama(path, verbose=True, seed=0, **kwargs)
print("loaded", flush=True)
llm.eval(llm.tokenize(b"Tom has 12 apples.\\nAnswer:", add_bos=True, special=True))
print("evaluated", flush=True)
"""

SETTINGS = {
    "export check (n_ctx 512, 4 threads)": {"n_ctx": 512, "n_batch": 512, "n_threads": 4, "n_threads_batch": 4},
    "teacher (n_ctx 8192, ubatch 512, all layers)": {"n_ctx": 8192, "n_batch": 512, "n_ubatch": 512, "n_gpu_layers": -1},
    "n_ctx 512, all layers": {"n_ctx": 512, "n_batch": 512, "n_gpu_layers": -1},
    "n_ctx 8192, no layers": {"n_ctx": 8192, "n_batch": 512, "n_ubatch": 512},
    "n_ctx 512, no op offload": {"n_ctx": 512, "n_batch": 512, "op_offload": False},
}

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
ggufs = [write_random_llama_gguf(out / "probe-f16-ctx1024.gguf", dtype="f16", context=1024),
         write_random_llama_gguf(out / "teacher-q8-ctx8192.gguf", dtype="q8_0", context=8192, rope_theta=10000.0),
         *map(Path, sys.argv[2:])]
with (out / "load_probe.log").open("w") as log:
    for gguf in ggufs:
        for name, kwargs in SETTINGS.items():
            proc = subprocess.run([sys.executable, "-X", "faulthandler", "-c", CHILD, str(gguf), json.dumps(kwargs)],
                                  capture_output=True, text=True, timeout=60)
            marks = [ln for ln in proc.stdout.splitlines() if ln in ("start", "imported", "loaded", "evaluated")]
            print(f"{gguf.name} · {name}: exit {proc.returncode}, last mark {marks[-1] if marks else None}", flush=True)
            log.write(f"===== {gguf.name} · {name}: exit {proc.returncode}\n{proc.stdout}\n--- stderr\n{proc.stderr}\n")
