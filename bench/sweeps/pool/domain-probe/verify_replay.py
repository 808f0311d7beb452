"""Would the blind verify call catch off-domain teacher text if its clause named the subject? (issue 29, stop 39)

The verify prompt of the runs below, rebuilt with the product's own verify_request (same shots, greedy, seed 0), in
two wordings: today's ("...or text of another kind") and one that adds "or about another subject than this task's
inputs". Sent for every kept row of diverse_all (runs 67, 68) and teach_all (runs 4, 10), and for 60 real test reviews
of run 4 (both wordings: real reviews were never verified). Each row is tagged with the keyword proxy of
../differ-replay/probe.py. Prints the verdicts per group, and the rows each wording calls no input of the task.

    python bench/sweeps/pool/domain-probe/verify_replay.py bench/out/pool.db > verify-replay.txt
    python bench/sweeps/pool/domain-probe/verify_replay.py bench/out/pool.db --movie > verify-replay-movie.txt
"""
from __future__ import annotations

import json
import re
import sqlite3
import sys
from collections import Counter
from pathlib import Path

from engine.augment.requests import verify_request, verify_shots, verify_verdict
from engine.config.schema import RunConfig
from engine.tasks.base import Example
from engine.tasks.registry import make_task
from models.teacher.base import TeacherRequest
from models.teacher.llama_cpp import LlamaCppTeacher

OLD = "or text of another kind)"
NEW = "or text of another kind, or about another subject than this task's inputs)"
# with --movie, the task line names the subject as well (a user's own description would)
DESCRIPTION = ("Rotten Tomatoes review snippet", "Rotten Tomatoes movie review snippet")
MOVIE = "--movie" in sys.argv


def reworded(content: str) -> str:
    """The verify request with the new clause (and, with --movie, the subject named in the task line)."""
    content = content.replace(OLD, NEW)
    return content.replace(*DESCRIPTION) if MOVIE else content

FILM = re.compile(open(Path(__file__).parents[1] / "differ-replay" / "probe.py").read().split('FILM = re.compile(r"')[1].split('"')[0], re.I)
OFF = re.compile(open(Path(__file__).parents[1] / "differ-replay" / "probe.py").read().split('OFF = re.compile(r"')[1].split('"')[0], re.I)

db = sqlite3.connect(sys.argv[1])
teacher_path = Path(json.loads(db.execute("select teacher from runs where id=4").fetchone()[0])["model"])
teacher = LlamaCppTeacher(teacher_path, n_ctx=4096, parallel=8, n_gpu_layers=0, n_threads=None, retries=2, seed=0)


TASK = make_task(RunConfig.model_validate(json.loads(db.execute("select config from runs where id=4").fetchone()[0])).task)


def kind(text: str) -> str:
    return "on film" if FILM.search(text) else ("off-domain (proxy)" if OFF.search(text) else "neither")


jobs: list[tuple[str, str, Example, TeacherRequest, TeacherRequest]] = []
for arm, runs in (("diverse_all kept", (67, 68)), ("teach_all kept", (4, 10))):
    for run in runs:
        cfg = RunConfig.model_validate(json.loads(db.execute("select config from runs where id=?", (run,)).fetchone()[0]))
        task = make_task(cfg.task)
        seeds = [Example(input=t, target=" " + a, answer=a) for t, a in
                 db.execute("select input, answer from examples where run_id=? and split='seed'", (run,))]
        shots = verify_shots(task, seeds, cfg.checks.verify_shots)
        picked = list(db.execute("select input, answer from examples where run_id=? and split='synthetic' and "
                                 "status='kept'", (run,)))
        for text, answer in picked:
            ex = Example(input=text, target=" " + answer, answer=answer)
            old = verify_request(task, cfg, ex, teacher.identity(), shots)
            msgs = [*old.messages[:-1], {**old.messages[-1], "content": reworded(old.messages[-1]["content"])}]
            assert OLD in old.messages[-1]["content"]
            new = TeacherRequest(key=old.key + "-new", messages=msgs, schema=old.schema, max_tokens=old.max_tokens,
                                 temperature=0.0, top_p=1.0, seed=0)
            jobs.append((f"{arm}, {kind(text)}", text, ex, old, new))
        if run == 4:
            for text, answer in list(db.execute("select input, answer from examples where run_id=4 and split='test' "
                                                "order by id"))[:60]:
                ex = Example(input=text, target=" " + answer, answer=answer)
                old = verify_request(task, cfg, ex, teacher.identity(), shots)
                msgs = [*old.messages[:-1], {**old.messages[-1], "content": reworded(old.messages[-1]["content"])}]
                new = TeacherRequest(key=old.key + "-new", messages=msgs, schema=old.schema, max_tokens=old.max_tokens,
                                     temperature=0.0, top_p=1.0, seed=0)
                jobs.append((f"real test reviews, {kind(text)}", text, ex, old, new))
print(len(jobs), "rows", flush=True)
print("the new clause:", NEW, "| task line names movies:", MOVIE, flush=True)
new_replies = teacher.generate([j[4] for j in jobs])
old_jobs = [j for j in jobs if j[0].startswith("real test")]
old_replies = {id(j): r for j, r in zip(old_jobs, teacher.generate([j[3] for j in old_jobs]))}
table: dict[str, Counter[str]] = {}
flagged: list[tuple[str, str, str]] = []
for job, reply in zip(jobs, new_replies):
    group, text, ex, _, _ = job
    verdict = verify_verdict(TASK, ex, reply.text)
    c = table.setdefault(group, Counter())
    c["n"] += 1
    c[f"new:{verdict}"] += 1
    if id(job) in old_replies:
        old_verdict = verify_verdict(TASK, ex, old_replies[id(job)].text)
        c[f"old:{old_verdict}"] += 1
    if verdict == "not_a_task":
        flagged.append((group, text, reply.text))
print("\n| group | n | new clause: not_a_task | new: label_disagrees | old clause: not_a_task (real reviews only) |")
print("|---|---|---|---|---|")
for group, c in sorted(table.items()):
    old = f"{c['old:not_a_task']}" if c["old:None"] + c["old:not_a_task"] + c["old:label_disagrees"] else "(kept: passed)"
    print(f"| {group} | {c['n']} | {c['new:not_a_task']} | {c['new:label_disagrees']} | {old} |")
print("\nrows the new clause calls no input of the task:")
for group, text, reply in flagged:
    print(f"  [{group}] {text[:130]}")
