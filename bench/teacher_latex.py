"""LaTeX through the teacher's JSON, before and after: a run's stored writing calls (their replies came from the
grammar of the time) are asked again of the same teacher under today's grammar, and both sets of texts are read with
today's reader. Counts the texts with LaTeX, with a command the run's real rows never use, with a backslash forced
into \\n (\\ntriangle read as a line break before "triangle", \\nabla written for \\tan) and with control characters.

    python bench/teacher_latex.py --store bench/out/sweeps.db --run 67 [--limit 23] [--threads 2] [--texts today.json]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.config.schema import RunConfig  # noqa: E402
from engine.filter.checks import has_control_chars  # noqa: E402
from engine.store.db import Store  # noqa: E402
from engine.tasks.registry import make_task  # noqa: E402
from models.catalog import resolve_model  # noqa: E402
from models.teacher.base import TeacherRequest  # noqa: E402
from models.teacher.llama_cpp import LlamaCppTeacher  # noqa: E402
from models.teacher.reply_json import loads_reply  # noqa: E402

_COMMAND = re.compile(r"\\([A-Za-z]+)")
_BREAK_WORD = re.compile(r"\n([A-Za-z]+)")


def known_commands(texts: list[str]) -> set[str]:
    """The LaTeX commands the run's real rows (seed, validation, test) use."""
    return {m for t in texts for m in _COMMAND.findall(t)}


def texts_of(reply_text: str) -> list[str]:
    """The example texts of one writing reply, read as the product reads them ([] when unreadable)."""
    try:
        parsed = loads_reply(reply_text)
    except (json.JSONDecodeError, RecursionError):
        return []
    return [str(e.get("text", "")) for e in parsed.get("examples", []) if isinstance(e, dict)]


def forced_n(text: str, known: set[str]) -> bool:
    """Whether the text shows a backslash forced into \\n: an n-command the real rows never use (\\nabla for \\tan,
    \\ntriangle), or inside $...$ math a line break right before a command's letters (\\n + "frac")."""
    if any(c.startswith("n") and c not in known for c in _COMMAND.findall(text)):
        return True
    maths = text.split("$")[1::2]
    return any(m.group(1) in known for math in maths for m in _BREAK_WORD.finditer(math))


def tally(texts: list[str], known: set[str]) -> dict[str, object]:
    """How many texts hold LaTeX, a command the real rows never use, a forced \\n, a control character."""
    unknown = [t for t in texts if any(c not in known for c in _COMMAND.findall(t))]
    forced = [t for t in texts if forced_n(t, known)]
    return {"texts": len(texts), "with_latex": sum(bool(_COMMAND.search(t)) for t in texts),
            "command_not_in_real_rows": len(unknown), "forced_n": len(forced),
            "control_chars": sum(has_control_chars(t) for t in texts), "examples": (forced or unknown)[:3]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--run", type=int, required=True)
    ap.add_argument("--limit", type=int, default=8, help="writing calls to ask again")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--texts", type=Path, help="JSON file of today's texts: read it if it exists, else write it")
    args = ap.parse_args()
    store = Store(args.store)
    cfg = RunConfig.model_validate(store.run(args.run).config)
    task = make_task(cfg.task)
    calls = store.db.execute("SELECT key, prompt, response FROM teacher_calls WHERE run_id = ? AND purpose = 'write' "
                             "AND ok = 1 ORDER BY key LIMIT ?", [args.run, args.limit]).fetchall()
    real = [r.input for r in store.examples(args.run) if r.split != "synthetic"]
    known = known_commands(real)
    before = [t for _, _, response in calls for t in texts_of(response)]
    if args.texts and args.texts.is_file():
        after = json.loads(args.texts.read_text(encoding="utf-8"))
        print(f"run {args.run}: today's texts read from {args.texts}")
    else:
        schema = task.teacher_schema(cfg.loop.examples_per_miss)
        requests = [TeacherRequest(key=key, messages=json.loads(prompt), schema=schema,
                                   max_tokens=cfg.teacher.max_tokens, temperature=cfg.teacher.temperature,
                                   top_p=cfg.teacher.top_p, seed=i) for i, (key, prompt, _) in enumerate(calls)]
        teacher = LlamaCppTeacher(resolve_model(cfg.teacher.model), n_ctx=cfg.teacher.n_ctx,
                                  parallel=min(len(requests), 8) or 1, n_threads=args.threads)
        t0 = time.perf_counter()
        replies = teacher.generate(requests)
        seconds = time.perf_counter() - t0
        teacher.close()
        after = [t for reply in replies for t in texts_of(reply.text)]
        print(f"run {args.run}: {len(calls)} writing calls asked again in {seconds:.0f} s "
              f"({sum(r.error is None for r in replies)} schema-valid replies)")
        if args.texts:
            args.texts.write_text(json.dumps(after, ensure_ascii=False, indent=1), encoding="utf-8")
    for name, texts in (("stored (grammar of the time)", before), ("today's grammar", after)):
        counts = tally(texts, known)
        shown = counts.pop("examples")
        print(f"{name}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        for text in shown:  # type: ignore[attr-defined]
            print(f"    {text[:200]!r}")


if __name__ == "__main__":
    main()
