"""Replay issue 29's diverse_all round-0 write calls (runs 67, 68) with today's template (only the differ clause
changed): same messages otherwise, same schema, seed and sampling; save old and new replies side by side."""
from __future__ import annotations
import json, sqlite3, sys
from pathlib import Path
from engine.config.schema import RunConfig
from engine.augment.requests import cache_key, derive_seed
from engine.tasks.registry import make_task
from engine.tasks.teacher_prompt import distinct_examples
from models.teacher.llama_cpp import LlamaCppTeacher
from models.teacher.base import TeacherRequest

OLD = "each with its own topic, situation, wording and sentence structure."
NEW = ("each with its own situation, details, wording and sentence structure. Do not change what kind of thing they are "
       "about: each stays on the same kind of subject as the text above, as a real input of this task would.")
db = sqlite3.connect(sys.argv[1])
cfg = RunConfig.model_validate(json.loads(db.execute("select config from runs where id=67").fetchone()[0]))
task = make_task(cfg.task)
schema = distinct_examples(task.teacher_schema(10))
rows = db.execute("""select distinct c.key, c.prompt, c.response, c.run_id, p.content_hash from teacher_calls c
  join examples e on e.teacher_call=c.key and e.run_id=c.run_id join examples p on p.id=e.parent_id
  where c.run_id in (67,68) and c.purpose='write' and c.round=0 order by c.run_id, c.key""").fetchall()
teacher = LlamaCppTeacher(Path(json.loads(db.execute("select teacher from runs where id=67").fetchone()[0])["model"]),
                          n_ctx=4096, parallel=8, n_gpu_layers=0, n_threads=None, retries=2, seed=0)
reqs = []
for key, prompt, response, run, chash in rows:
    messages = json.loads(prompt)
    assert OLD in messages[-1]["content"]
    seed = derive_seed(run - 67, 0, chash)  # run 67 is seed set 0 (seed 0), run 68 seed set 1 (seed 1)
    assert cache_key(teacher.identity(), messages, schema, cfg.teacher.temperature, cfg.teacher.top_p,
                     cfg.teacher.max_tokens, seed) == key, "not the stored call"
    messages = [*messages[:-1], {**messages[-1], "content": messages[-1]["content"].replace(OLD, NEW)}]
    reqs.append(TeacherRequest(key=key + "-new", messages=messages, schema=schema, max_tokens=cfg.teacher.max_tokens,
                               temperature=cfg.teacher.temperature, top_p=cfg.teacher.top_p,
                               seed=seed))
print(len(reqs), "calls", flush=True)
import time
out = []
for run in (67, 68):  # one run's calls at a time, as the run sent them
    batch = [(row, req) for row, req in zip(rows, reqs) if row[3] == run]
    started = time.time()
    replies = teacher.generate([req for _, req in batch], on_reply=lambda r: print("reply", r.key[:8], r.tokens_out, round(r.seconds), flush=True))
    print("run", run, "took", round(time.time() - started), "s", teacher.decoder.stats if teacher.decoder else "", flush=True)
    out += [{"key": k, "run": run, "old": resp, "new": r.text, "ok": r.error is None} for ((k, _, resp, _, _), _), r in zip(batch, replies)]
    Path(sys.argv[2]).write_text(json.dumps(out, indent=1))
print("done", sum(r["ok"] for r in out), "ok of", len(out))
