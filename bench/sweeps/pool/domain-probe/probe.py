"""Does the student's own embedding tell an off-domain teacher text from a real review? (issue 29, stop 39)

Mean-pooled last hidden states of the base student (SmolLM2-135M, no adapter). Each text's domain score is its highest
cosine similarity to a reference set: the run's seeds, or the seeds plus 500 rows of the unlabeled pool. Groups: kept
rows of diverse_all (runs 67, 68) and teach_all (runs 4, 10), split by the keyword proxy of ../differ-replay/probe.py,
and real test reviews. The cut is the 5th percentile of the real test reviews' scores (5% false positives on real text
by construction); the table gives the share of each group under it.

    python bench/sweeps/pool/domain-probe/probe.py bench/out/pool.db ~/.cache/llm2llm/models/hf/<id> > probe.txt
"""
from __future__ import annotations

import json
import random
import re
import sqlite3
import sys

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

FILM = re.compile(r"\b(film|films|movie|movies|actor|actors|actress|cast|director|directed|directing|plot|script|screenplay|screen|comedy|comedies|drama|thriller|scene|scenes|performance|performances|cinema|cinematic|sequel|documentary|animated|animation|character|characters|hollywood|filmmaker|filmmakers|picture|audience|audiences|watch|watching|watched|viewer|viewers|theater|theatre|story|storytelling|acting|role|cameo|horror|genre|trailer|box office|oscar)\b", re.I)
OFF = re.compile(r"\b(restaurant|restaurants|meal|food|dish|chef|waiter|hotel|product|phone|laptop|car|book|novel|reading|read|album|song|songs|concert|band|game|games|vacation|trip|service|store|shop|customer|purchase|bought|price|expensive|weather|job|class|teacher|school|party|painting|museum|exhibit|exhibition|play|musical|show)\b", re.I)

torch.set_num_threads(1)
db = sqlite3.connect(sys.argv[1])
tok = AutoTokenizer.from_pretrained(sys.argv[2], local_files_only=True)
model = AutoModelForCausalLM.from_pretrained(sys.argv[2], local_files_only=True, dtype=torch.float32).eval()


def embed(texts: list[str]) -> np.ndarray:
    out = []
    for i in range(0, len(texts), 16):
        batch = tok(texts[i:i + 16], return_tensors="pt", padding=True, truncation=True, max_length=96)
        with torch.no_grad():
            h = model(**batch, output_hidden_states=True).hidden_states[-1]
        mask = batch["attention_mask"].unsqueeze(-1).float()
        v = (h * mask).sum(1) / mask.sum(1)
        out.append(torch.nn.functional.normalize(v, dim=-1).numpy())
    return np.concatenate(out)


def rows(q: str, *a: object) -> list[str]:
    return [r[0] for r in db.execute(q, a)]


if tok.pad_token is None:
    tok.pad_token = tok.eos_token
pool = [json.loads(line)["text"] for line in open("bench/out/rt_pool.jsonl", encoding="utf-8")]
pool_emb = embed(random.Random(0).sample(pool, 500))
test = rows("select input from examples where split='test' and run_id=4")
test_emb = embed(test)
groups: dict[str, list[float]] = {}
groups_pool: dict[str, list[float]] = {}
quotes: list[tuple[float, str, str]] = []
for arm, runs in (("diverse_all", (67, 68)), ("teach_all", (4, 10))):
    for run in runs:
        seeds = embed(rows("select input from examples where split='seed' and run_id=?", run))
        ref = np.concatenate([seeds, pool_emb])
        kept = rows("select input from examples where split='synthetic' and status='kept' and run_id=?", run)
        for text, v in zip(kept, embed(kept)):
            kind = "on film" if FILM.search(text) else ("off-domain (proxy)" if OFF.search(text) else "neither")
            s, sp = float((seeds @ v).max()), float((ref @ v).max())
            groups.setdefault(f"{arm} kept, {kind}", []).append(s)
            groups_pool.setdefault(f"{arm} kept, {kind}", []).append(sp)
            quotes.append((s, kind, text))
        scores = (test_emb @ seeds.T).max(1)
        groups.setdefault("real test reviews", []).extend(scores.tolist())
        groups_pool.setdefault("real test reviews", []).extend((test_emb @ ref.T).max(1).tolist())
for name, g in (("seeds only", groups), ("seeds + 500 pool rows", groups_pool)):
    cut = float(np.percentile(g["real test reviews"], 5))
    print(f"\nreference: {name}; cut at the real reviews' 5th percentile = {cut:.3f}\n")
    print("| group | n | mean score | under the cut |\n|---|---|---|---|")
    for k, v in sorted(g.items()):
        a = np.array(v)
        print(f"| {k} | {len(a)} | {a.mean():.3f} | {(a < cut).mean():.0%} |")
print("\nlowest-scoring kept rows (seeds only):")
for s, kind, text in sorted(quotes)[:15]:
    print(f"  {s:.3f} [{kind}] {text[:120]}")
