"""A busy machine: the demo's three kinds of work idle, then beside a busy loop pinned to one core, per thread policy.

    .venv/bin/python bench/busy.py                  # the demo's models (l2l models get them), fixed vs fitted threads
    .venv/bin/python bench/busy.py --tiny           # random tiny models: checks the bench itself in seconds

Slices (each the same work every time): one LoRA training of 4 optimizer steps on 32 seed reviews, one teacher batch
of 8 writing calls (batched decoding, parallel 8), one evaluation of 100 reviews (option scoring). Each runs idle, then
while a second process spins on one core (started and stopped here, pinned with sched_setaffinity). Policies:
`fixed` uses every core (what llm2llm did before: torch's and llama.cpp's default), `fitted` lets models/threads.py
measure the free cores at the start and between steps, `one` runs 1 thread (its idle time is what one free core
gives: the fair share beside a neighbour that takes the other). Prints seconds per slice and the busy/idle ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


SPIN = "import os\nos.sched_setaffinity(0, {%d})\nx = 0\nwhile True:\n    x += 1\n"


def start_neighbour(core: int) -> int:
    """Start a busy loop pinned to one core as another process's work, not this one's: the shell that starts it exits,
    so it is no child of this process (models/threads.py counts this process's children as its own work, as it must
    for the teacher's own process). Returns its pid."""
    out = subprocess.run(["sh", "-c", f'"{sys.executable}" -c "$0" >/dev/null 2>&1 & echo $!', SPIN % core],
                         capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def reviews(n: int) -> list[dict[str, str]]:
    """The first n rows of the demo's sentiment data."""
    from importlib import resources

    text = resources.files("engine").joinpath("demo_data/sentiment.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()[:n]]


def slices(tiny: bool, threads: int | None, tmp: Path) -> dict[str, Callable[[], None]]:
    """The three slices, built on loaded models (loading is not timed)."""
    from models.device import plan_training
    from models.params import LoraParams, TeacherParams, TrainParams
    from models.student import Student
    from models.student_score import StudentScorer
    from models.student_train import StudentTrainer
    from models.teacher import open_teacher
    from models.teacher.base import TeacherRequest
    from models.threads import TorchThreads

    if tiny:
        from models.convert import resolve_student_folder
        from models.random_gguf import write_random_llama_gguf

        gguf = write_random_llama_gguf(tmp / "tiny.gguf")
        student_folder = resolve_student_folder(gguf, tmp / "cache")
        teacher_path = gguf
    else:
        from models.catalog import resolve_model
        from models.convert import resolve_student_folder
        from models.paths import model_cache

        student_folder = resolve_student_folder(resolve_model("smollm2-135m-instruct"), model_cache())
        teacher_path = resolve_model("qwen2.5-coder-1.5b-instruct")
    rows = reviews(132)
    seeds, evals = rows[:32], rows[32:132]
    prompt = "Is the sentiment of this movie review positive or negative?\nReview: {}\nAnswer:"
    pairs = [(prompt.format(r["text"]), " " + str(r["label"])) for r in seeds]
    student = Student.load(student_folder, plan_training("none"), LoraParams(), 256)

    def train() -> None:
        student.threads = TorchThreads(threads)
        StudentTrainer(student).train(pairs, TrainParams(steps=4, batch_size=8, learning_rate=3e-4), seed=0, out_dir=tmp / "adapter")

    def evaluate() -> None:
        student.threads = TorchThreads(threads)
        options = [[" negative", " positive"]] * len(evals)
        StudentScorer(student).score_options([prompt.format(r["text"]) for r in evals], options, 32)

    def teach() -> None:
        teacher = open_teacher(TeacherParams(model=str(teacher_path), parallel=8, n_threads=threads, isolate="never"),
                               teacher_path, 0)
        schema = {"type": "object", "properties": {"examples": {"type": "array", "minItems": 1, "maxItems": 1, "items": {
            "type": "object", "properties": {"text": {"type": "string", "minLength": 10, "maxLength": 200},
                                             "label": {"enum": ["negative", "positive"]}},
            "required": ["text", "label"], "additionalProperties": False}}}, "required": ["examples"],
            "additionalProperties": False}
        requests = [TeacherRequest(key=f"r{i}", messages=[
            {"role": "system", "content": "You write new movie reviews for a sentiment classifier. Reply with JSON."},
            {"role": "user", "content": f"Write 1 new review with the same label as this one.\nReview: {r['text']}\n"
                                        f"Label: {r['label']}"}], schema=schema, max_tokens=48, temperature=0.7,
                                    top_p=0.95, seed=i) for i, r in enumerate(seeds[:8])]
        try:
            teacher.generate(requests)
        finally:
            teacher.close()

    return {"train 4 steps": train, "teacher 8 calls": teach, "eval 100 rows": evaluate}


def timed(fn: Callable[[], None]) -> float:
    """Wall seconds of one call."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    """Run every slice idle and busy under both thread policies and print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="random tiny models (checks the bench, not the machine)")
    parser.add_argument("--policies", default="fixed,fitted", help="comma-separated: fixed (every core), fitted, one "
                                                                    "(1 thread: the fair-share baseline)")
    args = parser.parse_args()
    from models.threads import cores

    n_cores = cores()
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        results: dict[tuple[str, str, str], float] = {}
        for policy in args.policies.split(","):
            work = slices(args.tiny, {"fixed": n_cores, "fitted": None, "one": 1}[policy], tmp)
            for name, fn in work.items():
                fn()  # warm: first-call costs (kernels, allocator) are not what this measures
                results[(policy, name, "idle")] = timed(fn)
                neighbour = start_neighbour(0)
                time.sleep(1.5)  # the neighbour is running before the slice looks at the cores
                try:
                    results[(policy, name, "busy")] = timed(fn)
                finally:
                    os.kill(neighbour, signal.SIGKILL)
                time.sleep(1.0)
                print(f"{policy:7s} {name:16s} idle {results[(policy, name, 'idle')]:7.2f} s  busy "
                      f"{results[(policy, name, 'busy')]:7.2f} s  ratio "
                      f"{results[(policy, name, 'busy')] / results[(policy, name, 'idle')]:5.2f}x", flush=True)
    print(f"({n_cores} cores; busy = one process spinning on core 0; fixed = {n_cores} threads, fitted = models/threads.py)")


if __name__ == "__main__":
    main()
