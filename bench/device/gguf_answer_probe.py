"""Which llama.cpp setting kills `l2l export --check`'s GGUF answers on CUDA: tiny random GGUFs (f16 and q8_0, head
dim 16 and 64) loaded as export_predict.GgufStudent loads them, and with offload variants, each in its own process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

sys.path[:0] = ["."]

from models.random_gguf import write_random_llama_gguf  # noqa: E402

CHILD = """
import sys, numpy as np, llama_cpp
path, ngl, kqv = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
llm = llama_cpp.Llama(path, n_ctx=512, n_batch=512, logits_all=True, n_threads=4, n_threads_batch=4, seed=0,
                      verbose=False, n_gpu_layers=ngl, offload_kqv=kqv)
ids = llm.tokenize(b"Tom has 12 apples.\\nAnswer:", add_bos=True, special=True)
llm.reset(); llm.eval(ids)
print("scores", np.asarray(llm.scores[len(ids) - 1]).argmax(), flush=True)
llm.n_tokens = len(ids); llm.eval(ids[:2])
print("option pass ok", flush=True)
"""

out = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/probe")
out.mkdir(parents=True, exist_ok=True)
for dtype in ("f16", "q8_0"):
    for hidden in (64, 256):
        path = out / f"tiny-{dtype}-{hidden}.gguf"
        write_random_llama_gguf(path, hidden=hidden, ff=2 * hidden, dtype=dtype, context=1024)
        for ngl, kqv in ((0, 1), (0, 0), (-1, 1)):
            proc = subprocess.run([sys.executable, "-c", CHILD, str(path), str(ngl), str(kqv)], capture_output=True,
                                  text=True, timeout=60)
            tail = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "scores" in ln or "ok" in ln or "rror"
                    in ln or "assert" in ln.lower() or "ABORT" in ln][-3:]
            print(f"{dtype} hidden {hidden} (head dim {hidden // 4}) n_gpu_layers {ngl} offload_kqv {kqv}: "
                  f"exit {proc.returncode} {tail}", flush=True)
