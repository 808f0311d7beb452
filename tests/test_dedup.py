"""Exact and near-duplicate detection on real review texts."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from engine.data.dedup import DedupIndex, fold_math_names, normalise, text_hash

FIXTURES = Path(__file__).parent / "fixtures"
REVIEWS = [json.loads(line)["text"] for line in (FIXTURES / "rotten_tomatoes_20.jsonl").read_text(encoding="utf-8").splitlines()]
QUESTIONS = [json.loads(line)["question"] for line in (FIXTURES / "gsm8k_10.jsonl").read_text(encoding="utf-8").splitlines()]


def index_of(texts: list[str], threshold: float = 0.9) -> DedupIndex:
    index = DedupIndex(threshold)
    for i, text in enumerate(texts):
        index.add(text, f"ref-{i}")
    return index


def test_normalise_ignores_case_spacing_and_punctuation() -> None:
    assert normalise("  The  Film, is GREAT!! ") == "the film is great"
    assert text_hash("Responsável direto") == text_hash("RESPONSÁVEL   direto.")


def test_exact_duplicate_after_normalisation() -> None:
    index = index_of(REVIEWS)
    assert index.match(REVIEWS[3]) == ("exact_duplicate", "ref-3")
    assert index.match("  " + REVIEWS[5].upper() + " !") == ("exact_duplicate", "ref-5")


def test_near_duplicate_of_a_lightly_edited_text() -> None:
    index = index_of(REVIEWS + QUESTIONS)
    edited = REVIEWS[0].replace("college kids", "college students")
    assert index.match(edited) == ("near_duplicate", "ref-0")
    numbers_only = QUESTIONS[0].replace("48", "46")
    assert index.match(numbers_only) == ("near_duplicate", f"ref-{len(REVIEWS)}")


# engine/demo_data/sentiment.jsonl line 127; the real run's 0.5B teacher returned its last two sentences
CITY_BY_THE_SEA = (
    "City by the Sea is the cinematic equivalent of defensive driving: It's careful, conscientious and makes no "
    "major mistakes. But what saves lives on the freeway does not necessarily make for persuasive viewing."
)


def test_a_piece_of_a_reference_or_a_reference_plus_words_is_a_copy() -> None:
    index = index_of(REVIEWS + [CITY_BY_THE_SEA])
    tail = "It's careful, conscientious and makes no major mistakes. But what saves lives on the freeway does not necessarily make for persuasive viewing."
    assert index.match(tail) == ("near_duplicate", f"ref-{len(REVIEWS)}")
    padded = REVIEWS[4] + " I would not watch it again."
    assert index.match(padded) == ("near_duplicate", "ref-4")
    assert index.match("But what saves lives on the freeway does not necessarily persuade.") is None, "a small shared clause is not a copy"


def test_new_texts_are_not_duplicates() -> None:
    index = index_of(REVIEWS + QUESTIONS)
    assert index.match("A quiet, patient film about a lighthouse keeper that earns every one of its tears.") is None
    assert index.match("the film") is None, "a short text inside a long one is not a duplicate of it"


def test_a_math_problem_that_only_renames_its_names_is_a_copy() -> None:
    # Kept by the llm2llm arm of MATH sweep 12 (run 68, round 0): three renamings of one seed, 89% similar as words.
    seed = r"In $\triangle XYZ$, we have $\angle X = 90^\circ$ and $\tan Y = \frac34$.  If $YZ = 30$, then what is $XY$?"
    written = [r"In $\triangle ABC$, we have $\angle A = 45^\circ$ and $\tan B = \frac{3}{4}$.  If $BC = 30$, then what is $AB$?",
               r"In $\triangle DEF$, we have $\angle D = 45^\circ$ and $\tan E = \frac{3}{4}$.  If $EF = 30$, then what is $DE$?"]
    assert fold_math_names(written[0]) == fold_math_names(written[1])
    assert fold_math_names(r"It costs \$5; $\tan x$ and $AB$.") == r"It costs \$5; $\tan v$ and $v$.", \
        "commands and text outside math keep their letters"
    assert all(index_of([seed]).match(text) == ("near_duplicate", "ref-0") for text in written)
    problems = [json.loads(line)["problem"] for line in (FIXTURES / "math_topic_42.jsonl").read_text(encoding="utf-8").splitlines()]
    index = DedupIndex(0.9)
    for i, problem in enumerate(problems):
        assert index.match(problem) is None, f"real problem {i} is not a copy of another"
        index.add(problem, i)


def test_a_math_problem_that_only_changes_its_math_delimiters_is_a_copy() -> None:
    # Kept by the llm2llm arm of MATH sweep 13 (run 72, round 1): the seed (a MATH train row) with \(...\) for $...$.
    seed = ("For what values of the constant $c$ does the graph of $f(x) = \\frac{x^2-x+c}{x^2+x-20}$ have exactly one "
            "vertical asymptote?\n\nEnter all possible values, separated by commas.")
    written = (r"For what values of the constant \(c\) does the graph of \(f(x) = \frac{x^2 - x + c}{x^2 + x - 20}\) have "
               r"exactly one vertical asymptote?")
    assert fold_math_names(r"\(c\), \[AB\], $$xy$$ and \tan") == r"\(v\), \[v\], $$v$$ and \tan"
    assert index_of([seed]).match(written) == ("near_duplicate", "ref-0")

def test_threshold_controls_near_matches() -> None:
    edited = REVIEWS[2].replace("genuine", "sincere")
    assert index_of(REVIEWS, 0.8).match(edited) is not None
    assert index_of(REVIEWS, 1.0).match(edited) is None, "threshold 1.0 keeps only exact duplicates"
    with pytest.raises(ValueError):
        DedupIndex(0)


def test_empty_index_and_incremental_adds() -> None:
    index = DedupIndex()
    assert index.match(REVIEWS[0]) is None and len(index) == 0
    index.add(REVIEWS[0], 41)
    index.add(REVIEWS[0] + ".", 42)
    assert index.match(REVIEWS[0]) == ("exact_duplicate", 41), "the first id of a duplicate is kept"


def test_many_references_and_candidates() -> None:
    """Thousands of references × hundreds of candidates: the filter phase's real shape."""
    rng = random.Random(0)
    words = " ".join(REVIEWS + QUESTIONS).split()
    refs = [" ".join(rng.choices(words, k=rng.randint(8, 40))) for _ in range(3000)]
    index = index_of(refs)
    fresh = [" ".join(rng.choices(words, k=20)) for _ in range(150)]
    edited = []
    for ref in refs[:50]:
        tokens = ref.split()
        tokens[rng.randrange(len(tokens))] = "zebra"
        edited.append(" ".join(tokens))
    assert sum(index.match(t) is not None for t in fresh) == 0
    hits = [index.match(t) for t in edited]
    assert sum(h is not None for h in hits) >= 45
