"""llama.cpp after torch has touched CUDA: the teacher in its own process (how the product runs it), or a model loaded
in this very process with no layers offloaded (what the product never does: it crashed on the H200)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path[:0] = [".", "bench"]

import torch  # noqa: E402

mode, path = sys.argv[1], Path(sys.argv[2])
print("torch.cuda.is_available()", torch.cuda.is_available(), "initialized", torch.cuda.is_initialized(), flush=True)
t0 = time.time()
if mode == "own-process":
    from bench_teacher import build_requests

    from models.teacher.own_process import ProcessTeacher

    torch.zeros(1, device="cuda")
    for m in ("sequential", "batched"):
        t = ProcessTeacher(path, n_ctx=8192, parallel=8 if m == "batched" else 1, n_gpu_layers=-1, retries=0, mode=m)
        print(m, "loaded", round(time.time() - t0, 1), t.info(), flush=True)
        streamed: list[int] = []
        replies = t.generate(build_requests(4, 64, 0.7), on_reply=lambda r, s=streamed: s.append(r.tokens_out))
        print(m, "generated", [r.tokens_out for r in replies], "streamed", streamed, flush=True)
        t.close()
else:
    import llama_cpp

    llm = llama_cpp.Llama(str(path), n_ctx=512, n_gpu_layers=0, verbose=False)
    print("in this process, n_gpu_layers=0:", llm("Hello", max_tokens=4)["usage"], flush=True)
    llm.close()
