"""Checks on teacher candidates, on real rows: the demo's meta-text and wrong-label rows, MATH LaTeX through JSON,
length, siblings, dedup reasons, the per-label cap, and the blind verifier's verdicts."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.config.schema import ChecksConfig, resolve
from engine.data.example_rows import example_row
from engine.filter.checks import (
    LengthRange,
    MetaText,
    asks,
    balance_cap,
    has_control_chars,
    label_mismatch,
    seeds_ask,
    seeds_pair_dollars,
    unpaired_dollars,
)
from engine.filter.filtering import CandidateFilter
from engine.store.rows import StoredExample
from engine.tasks.base import Example, Task
from engine.tasks.prompt_templates import load_template
from engine.tasks.registry import make_task
from engine.tasks.teacher_prompt import NOT_VALID
from models.teacher.base import check_reply
from models.teacher.reply_json import loads_reply

FIXTURES = Path(__file__).parent / "fixtures"

# Kept by the demo run of the earlier product (sentiment, 3 rounds), quoted in the teacher-data issue.
DEMO_META = [
    "The reviewer expresses gratitude for the movie's humor and intelligence, indicating a positive sentiment.",
    "The review was overwhelmingly positive, with no criticisms.",
    "The reviewer loved the film's humor and performances.",
]
# Kept by the no_verify arm of sweep 5 (bench/out/sweeps.db) before "states" was a reporting verb of the check.
SWEEP_META = ["The reviewer states that the movie was 'nothing special' and that the plot was 'not engaging.'",
              # kept by the one_shot arm of sweep 9 before "emphasizes" was an about-verb of the check
              "The review emphasizes the playful fun for preschool set while also praising the wholesome attitude, "
              "which may not be the main selling point."]
# Kept by the llm2llm arm of MATH sweep 3, round 0 (bench/out/sweeps.db, run 12): the teacher wrote `30^\"` for a degree
# sign, JSON read it as a quote, and the problem was cut off inside its math. 3 of the 11 kept; 21 of 192 written.
MATH_UNPAIRED = [
    'In right triangle $ABC$, we have $\\angle A = 30^", \\angle B = 60^", \\angle C = 90^\\',
    'In right triangle $XYZ$, we have $\\angle X = 45^", \\angle Y = 45^", \\angle Z = 90^\\',
    'In a right triangle $XYZ$, where $X = 90^", we have $\\tan Y = \\frac{3}{4}$ and $YZ = 30$. Find the length of $XY$.',
]
DEMO_REAL = [  # also kept by that run, and real reviews in form
    "The movie is a masterpiece, but it doesn't have any special moments for me.",
    "The movie is very good, and Ms. Bullock does a great job.",
    "The movie was a great action thriller with great acting.",
]


def jsonl(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (FIXTURES / name).read_text(encoding="utf-8").splitlines() if line.strip()]


def task_of(preset: str) -> Task:
    return make_task(resolve({"task": {"preset": preset}}).task)


def test_meta_text_catches_the_demo_rows_and_no_real_input() -> None:
    sentiment = MetaText(task_of("rotten_tomatoes"))
    assert all(sentiment.match(text) for text in DEMO_META + SWEEP_META)
    assert not any(sentiment.match(text) for text in DEMO_REAL)
    assert sentiment.nouns == ["input", "review", "snippet"], "nouns come from the task's prompt and description"
    for preset, name, field in (("rotten_tomatoes", "rotten_tomatoes_20.jsonl", "text"),
                                ("math_topic", "math_topic_42.jsonl", "problem"),
                                ("mmlu_stem", "mmlu_stem_12.jsonl", "question"), ("gsm8k", "gsm8k_10.jsonl", "question")):
        meta = MetaText(task_of(preset))
        assert [r[field] for r in jsonl(name) if meta.match(r[field])] == [], preset
    assert MetaText(task_of("math_topic")).match("This problem asks for the sum of two angles in a triangle.")
    custom = MetaText(task_of("rotten_tomatoes"), [r"\bin summary\b"])
    assert custom.match("In summary, a fine film.") and not sentiment.match("In summary, a fine film.")


# Written by the teacher of MATH sweep 11 (run 67, round 0) under a grammar that allowed only \" \\ \/ \n \uXXXX after a
# backslash: wanting \triangle and \tan, it was forced into \ntriangle and \nabla (raw reply text, as stored).
SWEEP11_RAW = r'{"texts": ["In $\ntriangle XYZ$, we have $\nangle X = 90^\not{}$", "In triangle $ABC,$ $\nabla A \nabla C$"]}'


def test_teacher_latex_written_with_one_backslash_is_read_as_written() -> None:
    # '\tan', '\frac', '\theta' with one backslash inside a JSON string: plain JSON decodes \t, \f to a tab and a
    # form feed (an earlier store held "$y = <TAB>an (2x + <FF>rac{<TAB>heta}{2})$").
    written = r'{"text": "$y = \tan (2x + \frac{\theta}{2})$, $a \neq b$, \[\nabla f\]\nExpress $\triangle$ \u00e9"}'
    assert has_control_chars(json.loads(written.split(", \\[")[0] + '"}')["text"])
    text = loads_reply(written)["text"]
    assert text == "$y = \\tan (2x + \\frac{\\theta}{2})$, $a \\neq b$, \\[\\nabla f\\]\nExpress $\\triangle$ é"
    assert loads_reply(r'{"text": "Total:\nnot \ne 4 \\ \"ok\" \/ don\'t"}')["text"] == 'Total:\nnot \ne 4 \\ "ok" / don\'t', \
        "outside math \\n is a line break even before n-command letters; JSON's own escapes keep their meaning"
    for row in jsonl("math_topic_42.jsonl"):
        strict = json.dumps({"text": row["problem"]}, ensure_ascii=False)
        assert loads_reply(strict)["text"] == row["problem"], "correctly escaped JSON reads byte for byte"
        if "\\\\" not in row["problem"] and "\t" not in row["problem"]:  # a LaTeX \\ row break written single is \
            assert loads_reply(strict.replace("\\\\", "\\"))["text"] == row["problem"], "one backslash reads the same"
    assert [t.split("$")[-2][:6] for t in loads_reply(SWEEP11_RAW)["texts"]] == ["\nangle", "\\nabla"], \
        "what a forced \\n wrote cannot be undone by reading: the grammar must let the teacher write \\triangle"


# Any text but control characters; a newline only where no $ opens math (there \n+eq would be \neq by design).
_JSON_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc")) | st.just("\n"), max_size=60).filter(
    lambda t: "$" not in t or "\n" not in t)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=8), _JSON_TEXT, max_size=4),
       st.booleans())
def test_correctly_escaped_json_reads_as_json_does(doc: dict[str, str], ascii_only: bool) -> None:
    raw = json.dumps(doc, ensure_ascii=ascii_only)
    assert loads_reply(raw) == json.loads(raw)


def test_the_grammar_lets_latex_follow_a_backslash() -> None:
    from models.teacher.grammar import GRAMMAR, schema_grammar

    grammar = schema_grammar({"type": "object", "properties": {"text": {"type": "string", "maxLength": 50}},
                              "required": ["text"], "additionalProperties": False})
    escapes = grammar.split('"\\\\" (', 1)[1].split(" |", 1)[0]
    assert escapes == "[ -~]", "after a backslash any printable character: \\triangle needs no forced \\n"
    assert GRAMMAR == "latex-escapes", "a grammar change must change the teacher's cache identity"


def test_stored_candidates_keep_latex_and_non_ascii(tmp_path: Path) -> None:
    from engine.store.db import Store

    store = Store(tmp_path / "l2l.db")
    task = task_of("math_topic")
    texts = [r["problem"] for r in jsonl("math_topic_42.jsonl")] + ["Café déjà vu: ½ of ∞ — “quoted”"]
    with store.transaction():
        run_id = store.create_run("t", json.dumps({}), "h", 0, {}, {}, {})
        ids = store.insert_examples([example_row(run_id, "synthetic", Example(input=t, target=" Algebra", answer="Algebra"))
                                     for t in texts])
    assert [store.example(i).input for i in ids] == texts and task.kind == "classification"


def test_length_range_of_the_seeds() -> None:
    seeds = [r["text"] for r in jsonl("rotten_tomatoes_20.jsonl")]
    words = [len(t.split()) for t in seeds]
    span = LengthRange.of_seeds(seeds, 2.0)
    assert span is not None and span.low == min(words) / 2 and span.high == max(words) * 2
    assert span.allows(seeds[0]) and not span.allows("word " * (2 * max(words) + 1))
    assert LengthRange.of_seeds(seeds, 0) is None


def test_requested_label_mismatch() -> None:
    task = task_of("rotten_tomatoes")
    parent = Example(input="A warm film.", target=" positive", answer="positive")
    reply = {"what_made_it_hard": "x", "examples": [{"text": "A cold, dull film.", "label": "negative"},
                                                   {"text": "A kind, funny film.", "label": "positive"}]}
    wrong, right = task.parse_teacher(reply, parent)
    assert label_mismatch(task, wrong) and not label_mismatch(task, right)


def test_balance_cap_keeps_the_seed_mix() -> None:
    current = Counter({"positive": 16, "negative": 16})
    share = {"positive": 0.5, "negative": 0.5}
    candidates = [(i, "positive") for i in range(30)] + [(100 + i, "negative") for i in range(6)]
    kept = balance_cap(current, share, candidates, 0.1, seed=0)
    pos = sum(1 for i in kept if i < 100)
    neg = len(kept) - pos
    assert neg == 6 and (16 + pos) / (32 + len(kept)) <= 0.6 and pos > neg
    assert balance_cap(current, share, candidates, 0.1, seed=0) == kept, "deterministic"


def stored(row: dict[str, Any], row_id: int) -> StoredExample:
    """An example row as the store returns it."""
    return StoredExample.from_row({**row, "id": row_id, "reason": None})


def candidate(run_row_id: int, text: str, label: str, requested: str | None = None, meta: dict | None = None) -> StoredExample:
    row = example_row(1, "synthetic", Example(input=text, target=" " + label, answer=label,
                                                meta={"requested_label": requested or label, **(meta or {})}),
                      status="pending", origin_round=0)
    return stored(row, run_row_id)


def test_filter_decisions_on_real_rows_with_counted_reasons() -> None:
    task = task_of("rotten_tomatoes")
    rows = jsonl("rotten_tomatoes_20.jsonl")
    existing = [stored(example_row(1, split, Example(input=r["text"], target=" " + r["label"], answer=r["label"])), i)
                for i, (r, split) in enumerate(zip(rows, ["seed"] * 12 + ["validation"] * 4 + ["test"] * 4))]
    seeds = [e for e in existing if e.split == "seed"]
    screen = CandidateFilter(task, ChecksConfig(), 0.9, existing, seeds)
    pending = [
        candidate(100, DEMO_META[0], "positive"),
        candidate(101, DEMO_REAL[1], "positive"),
        candidate(102, DEMO_REAL[1] + "!", "positive"),  # a sibling's copy
        candidate(103, rows[0]["text"], rows[0]["label"]),  # a copy of a seed
        candidate(104, rows[14]["text"], rows[14]["label"]),  # a validation row: leakage
        candidate(105, "A cold, dull and lifeless film with nothing to say.", "negative", requested="positive"),
        candidate(106, "word " * 500, "negative"),
        candidate(107, "A quietly devastating, beautifully acted film about grief.", "positive"),
        candidate(108, "Clumsy, loud and far too long for its thin story.", "negative"),
        candidate(109, "Tab\there.", "negative"),
    ]
    asked: list[int] = []

    def verify(survivors: list[StoredExample]) -> dict[int, str | None]:
        asked.extend(r.id for r in survivors)
        return {r.id: ("label_disagrees" if r.id == 107 else None) for r in survivors}

    decisions = screen.decide(pending, verify, seed=0)
    assert decisions.rejected == {100: "meta_text", 102: "sibling_duplicate", 103: "copy_of_seed", 104: "leaks_eval",
                                  105: "label_mismatch", 106: "length", 107: "label_disagrees", 109: "control_chars"}
    assert asked == [101, 107, 108], "only survivors of the cheap checks cost a teacher call"
    assert decisions.kept == [101, 108]
    off = CandidateFilter(task, ChecksConfig(requested_label=False, meta_text=False, siblings=False, length=0),
                          0.9, existing, seeds).decide(pending, None, seed=0)
    assert {100, 102, 105, 106, 107} <= set(off.kept) and off.flags["label_mismatch_kept"] == 1


def test_blind_verifier_verdicts_and_prompts() -> None:
    task = task_of("rotten_tomatoes")
    ex = Example(input=DEMO_META[1], target=" positive", answer="positive")
    request = task.verify_messages(ex)[-1]["content"]
    assert DEMO_META[1] in request and "positive" in request and NOT_VALID in request
    assert "Correct label" not in request, "the verifier answers blind"
    assert task.verify_verdict({"label": NOT_VALID}, ex) == "not_a_task"
    assert task.verify_verdict({"label": "negative"}, ex) == "label_disagrees"
    assert task.verify_verdict({"label": "positive"}, ex) is None
    assert set(task.verify_schema()["properties"]["label"]["enum"]) == {"negative", "positive", NOT_VALID}
    topic = task_of("math_topic")
    answer = Example(input="The probability of getting exactly two heads in six coin tosses is 1/15.",
                     target=" Counting & Probability", answer="Counting & Probability")
    assert "Problem:\nThe probability" in topic.verify_messages(answer)[-1]["content"]
    math = task_of("gsm8k")
    problem = Example(input="Tom has 3 boxes of 12 pens and gives away 10. How many are left?", target=" #### 26", answer="26")
    assert math.verify_verdict({"solution": "36 - 10 = 26\n#### 26", "answer": 26}, problem) is None
    assert math.verify_verdict({"solution": "#### 27", "answer": 27}, problem) == "solve_disagrees"
    # A blind solve written with one-backslash LaTeX is read as every reply is (the loop once re-read it with
    # json.loads, which refuses \times as an invalid escape).
    reply = r'{"solution": "$3 \times 12 - 10 = 26$ pens, \$0 spent\n#### 26", "answer": 26}'
    parsed, error = check_reply(reply, math.verify_schema())
    assert error is None and parsed is not None and math.verify_verdict(parsed, problem) is None
    with pytest.raises(json.JSONDecodeError):
        json.loads(reply)
    mc = task_of("mmlu_stem")
    row = jsonl("mmlu_stem_12.jsonl")[0]
    q = mc.example_from_fields(row["question"], row["answer"], row["choices"])
    assert row["choices"][0] in mc.verify_messages(q)[-1]["content"]
    assert mc.verify_verdict({"answer": q.answer}, q) is None and mc.verify_verdict({"answer": NOT_VALID}, q) == "not_a_task"


@pytest.mark.parametrize("name", ["classification", "multiple_choice", "math", "free_text", "verify_classification",
                                  "verify_multiple_choice", "verify_math"])
def test_prompt_templates_declare_exactly_their_inputs(name: str) -> None:
    template = load_template(name)  # raises when the declared inputs and the used variables differ
    with pytest.raises(TypeError, match="missing inputs"):
        template.render()


def test_grounding_shows_real_seeds_of_the_same_label() -> None:
    from engine.augment.requests import grounding

    task = task_of("rotten_tomatoes")
    rows = jsonl("rotten_tomatoes_20.jsonl")
    seeds = [stored(example_row(1, "seed", Example(input=r["text"], target=" " + r["label"], answer=r["label"])), i)
             for i, r in enumerate(rows)]
    target = seeds[0]
    shown = grounding(task, target, seeds, 3)
    assert len(shown) == 3 and all(r.answer == target.answer and r.id != target.id for r in shown)
    assert grounding(task, target, seeds, 3) == shown and grounding(task, target, seeds, 0) == []
    messages = task.teacher_messages(Example(input=target.input, target=target.target, answer=target.answer),
                                     None, 2, grounding=[Example(input=r.input, target="", answer="") for r in shown])
    assert all(r.input[:60] in messages[-1]["content"] for r in shown)


def test_unpaired_math_is_rejected_where_the_seeds_pair_their_dollars() -> None:
    math_rows = [r["problem"] for r in jsonl("math_topic_42.jsonl")]
    assert seeds_pair_dollars(math_rows) and not any(unpaired_dollars(t) for t in math_rows)
    assert all(unpaired_dollars(t) for t in MATH_UNPAIRED)
    assert not unpaired_dollars(r"It costs \$5, and $x^2$ is $$y$$.")  # an escaped dollar is text
    # prices leave a $ unpaired in word problems, and reviews rarely hold one: the check stays off there
    assert not seeds_pair_dollars(r["question"] for r in jsonl("gsm8k_10.jsonl") + [{"question": "It costs $12 an hour."}])
    assert not seeds_pair_dollars(r["text"] for r in jsonl("rotten_tomatoes_20.jsonl"))
    task = task_of("math_topic")
    rows = jsonl("math_topic_42.jsonl")
    existing = [stored(example_row(1, "seed", Example(input=r["problem"], target=" " + r["type"], answer=r["type"])), i)
                for i, r in enumerate(rows)]
    pending = [candidate(100 + i, text, "Geometry") for i, text in enumerate(MATH_UNPAIRED)]
    on = CandidateFilter(task, ChecksConfig(verify=False), 0.9, existing, existing).decide(pending, None, seed=0)
    assert on.reasons == Counter({"unbalanced_math": 3})
    off = CandidateFilter(task, ChecksConfig(verify=False, repair_escapes=False), 0.9, existing, existing)
    assert "unbalanced_math" not in off.decide(pending, None, seed=0).reasons


def test_verify_shots_show_each_label_on_real_seeds_and_leave_the_default_prompt_as_it_was() -> None:
    from engine.augment.requests import verify_shots

    topic = task_of("math_topic")
    rows = jsonl("math_topic_42.jsonl")
    seeds = [Example(input=r["problem"], target=" " + r["type"], answer=r["type"]) for r in rows]
    shots = verify_shots(topic, seeds, 1)
    assert [s.answer for s in shots] == [label for label in topic.labels if any(e.answer == label for e in seeds)]
    assert verify_shots(topic, list(reversed(seeds)), 1) == shots, "drawn by content, not by order"
    assert len(verify_shots(topic, seeds, 2)) == sum(min(2, sum(e.answer == label for e in seeds)) for label in topic.labels)
    assert verify_shots(topic, seeds, 0) == [] and verify_shots(task_of("gsm8k"), seeds, 2) == []
    candidate = Example(input="What is $2+3$?", target=" Prealgebra", answer="Prealgebra")
    shown = topic.verify_messages(candidate, shots)[-1]["content"]
    assert f"- {shots[0].answer}: {shots[0].input[:40]}" in shown and shown.endswith("Problem:\nWhat is $2+3$?")
    assert "Correct label" not in shown and "Prealgebra: What is" not in shown, "the candidate's own label stays hidden"
    # Without shots the prompt is byte for byte the one every stored verification call was made with (cache keys hold).
    sentiment = task_of("rotten_tomatoes")
    assert sentiment.verify_messages(Example(input="A fine film.", target=" positive", answer="positive"))[-1]["content"] == (
        "Task: Sentiment of a Rotten Tomatoes review snippet: negative or positive.\nLabels: negative, positive.\n"
        "Read the review below and give its correct label, judging only the review itself. If it is not a valid input "
        "for this task (for example a description of or a comment about a review instead of a review, an answer or a "
        "solution instead of a review, or text of another kind), answer \"not a valid input\".\n\nReview:\nA fine film.")


# Statements and answers the 1.5B teacher wrote for MATH problems: the example, and two that a sweep cell of
# stop 22 kept as Number Theory (sweep 1 of that stop's store, run 2, round 1), since the blind verifier passed them.
MATH_STATEMENTS = [
    "The probability of getting exactly two heads in six coin tosses is 1/15.",
    "To find the minimum positive difference between two composite numbers such that their sum is equal to $87$, we "
    "can use the fact that $87 = 3 \\times 29$. One possible pair",
    "The number of prime numbers greater than $n!+1$ and less than $n!+n$ is equal to $n-1$. This is because the prime "
    "numbers between $n!+1$ and $n!+n$ are all of the form $n+1, n+2, \\ldots, n+1$, which means there are $n-1$ such "
    "numbers.",
]


def test_statements_are_rejected_where_the_seeds_are_questions() -> None:
    math_rows = [r["problem"] for r in jsonl("math_topic_42.jsonl")]
    assert all(asks(t) for t in math_rows) and seeds_ask(math_rows)
    assert seeds_ask(r["question"] for r in jsonl("gsm8k_10.jsonl")) and seeds_ask(r["input"] for r in jsonl("mawps_10.jsonl"))
    assert not seeds_ask(r["text"] for r in jsonl("rotten_tomatoes_20.jsonl"))  # reviews: the check stays off
    assert not any(asks(t) for t in MATH_STATEMENTS)
    # the forms real problems take: a request opening a clause, after math, after "then", or a question word
    assert all(asks(t) for t in ("Find the area of a circle with diameter 12 cm", "If $x=2$, then find $y$.",
                                 "If \\begin{align*} x&=1 \\end{align*}compute $x$.", "For how many $n$ is $n^2<9$",
                                 "Completely factor the expression: $$x^8-256$$", "Is 7 prime?",
                                 "If $x + y = 5$, what is the value of $x^2 + y^2$",
                                 "Let \\(a\\) be a root of \\(x^3 + px + q = 0.\\)  Express \\(a^3\\) in terms of $p$."))
    task = task_of("math_topic")
    existing = [stored(example_row(1, "seed", Example(input=r["problem"], target=" " + r["type"], answer=r["type"])), i)
                for i, r in enumerate(jsonl("math_topic_42.jsonl"))]
    problem = "Find the smallest prime whose digits sum to 23."  # kept beside them in that round, and a problem
    pending = [candidate(100 + i, text, "Number Theory") for i, text in enumerate([*MATH_STATEMENTS, problem])]
    on = CandidateFilter(task, ChecksConfig(verify=False), 0.9, existing, existing).decide(pending, None, seed=0)
    assert on.reasons == Counter({"not_a_question": 3}) and on.kept == [103]
    off = CandidateFilter(task, ChecksConfig(verify=False, questions=False), 0.9, existing, existing)
    assert "not_a_question" not in off.decide(pending, None, seed=0).reasons
