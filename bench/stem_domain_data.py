"""Issue 31 (b)'s task: which science a STEM exam question belongs to, derived from the MMLU-STEM rows of ../shared/data.

MMLU-STEM's 18 subjects fold into 6 domains (astronomy under physics, statistics under mathematics, machine learning
and security under computer science). The input is the question with its four options, the label its domain; the
answer is dropped. A 1.5B teacher knows what biology or chemistry is about; a 135M student shown a few questions per
domain has to learn it, which is the setting LLM2LLM assumes. Writes bench/out/stem_domain.jsonl.

    .venv/bin/python bench/stem_domain_data.py
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SOURCE = REPO.parent / "shared" / "data" / "mmlu_stem" / "test.jsonl"
OUT = REPO / "bench" / "out" / "stem_domain.jsonl"

DOMAINS = {
    "biology": ["high_school_biology", "college_biology"],
    "chemistry": ["high_school_chemistry", "college_chemistry"],
    "computer science": ["high_school_computer_science", "college_computer_science", "machine_learning",
                         "computer_security"],
    "electrical engineering": ["electrical_engineering"],
    "mathematics": ["elementary_mathematics", "high_school_mathematics", "college_mathematics", "abstract_algebra",
                    "high_school_statistics"],
    "physics": ["conceptual_physics", "high_school_physics", "college_physics", "astronomy"],
}
DOMAIN_OF = {subject: domain for domain, subjects in DOMAINS.items() for subject in subjects}


def question_text(row: dict[str, object]) -> str:
    """The question and its four options on one line each."""
    options = " | ".join(str(c).strip() for c in row["choices"])  # type: ignore[attr-defined]
    return f"{str(row['question']).strip()}\nOptions: {options}"


def main() -> None:
    """Write the derived file, one row per distinct question, in source order."""
    seen: set[str] = set()
    rows = []
    for line in SOURCE.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        text = question_text(row)
        if text in seen:
            continue
        seen.add(text)
        rows.append({"text": text, "label": DOMAIN_OF[row["type"]], "subject": row["type"]})
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(f"{len(rows)} rows -> {OUT}: {dict(sorted(Counter(r['label'] for r in rows).items()))}")


if __name__ == "__main__":
    main()
