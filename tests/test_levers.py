"""The [augment] levers against a teacher that copies its seed (issue 29): prompts, schemas, the hot retry on a real
tiny run, and defaults that leave today's prompts (and so the teacher cache) untouched."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import tiny_config_doc

from engine.augment.requests import (
    Target,
    cache_key,
    choose_targets,
    copies_its_seed,
    diversity,
    earlier_candidates,
    grounding,
    hot_request,
    request_seed,
    teacher_messages,
    teacher_schema,
    write_request,
)
from engine.config.schema import RunConfig, TaskConfig, apply_overrides, resolve
from engine.data.example_rows import example_from_row, example_row
from engine.experiments.arms import BUILTIN
from engine.run.loop import Loop
from engine.run.model_slots import open_run_teacher
from engine.run.runs import create_run, prepare, request_stop
from engine.run.scoring import is_miss
from engine.store.db import Store
from engine.store.rows import StoredExample
from engine.store.rows import Prediction
from engine.tasks.base import Example, Task
from engine.tasks.prompt_templates import load_template
from engine.tasks.registry import make_task
from engine.tasks.teacher_prompt import Diversity, content_words
from models.teacher.base import check_reply

# --- today's prompts, captured from the code before the levers existed -------------------------------------------------
# sha256 of json.dumps({"messages": ..., "schema": ...}, sort_keys=True, ensure_ascii=False) of each case below.
BEFORE = {
    "classification": "a93939d291a6561a60e93a9031a9d77235ec7468ebdf82cab057e05e212c3583",
    "classification_k1": "4d1c7360774004ab2ded210a7745e2aa23ee846a5ae5478afd883096f3ea0383",
    "math": "5e253841a98f5fa79cadfdd5764e960b89c4cc53b28084f5d8258c08b333598b",
    "free_text": "65cf188a53668aac7bf07a9793464e37b5a71008b449a519ef05acec17473ce1",
    "multiple_choice": "af7623a4d79faa2a82fa373817b2d45cc8962465433e7694c700532a585e726a",
}
BEFORE_CLASSIFICATION_REQUEST = (
    'Task: Sentiment of a review snippet.\nLabels: negative, positive.\nFirst, in "what_made_it_hard", say in one '
    "sentence what in the text below misled the student (for example sarcasm, negation, an idiom, a mixed verdict, a "
    "misleading keyword, rare words). Then write 3 new texts whose correct label is the same as the text below and that "
    "are hard in the same way: a careful human reader must still agree on the label. Each new text must itself be an "
    "input of this task, written as its author would write it, never a description of or a comment about such a text. "
    "Do not make them easier or more generic than the original, and do not copy it: change the topic, names and "
    "wording.\n\nReal examples labelled negative, for length and style:\n- A warm, funny film.\n- Sharp writing and a "
    "great cast.\n\nText the student got wrong:\nIt's not that the movie is bad, it's that it never decides what it "
    "wants to be.\n\nCorrect label: negative\n\nThe student answered: positive\n\nNow write the 3 new texts; the "
    "correct label of each is negative."
)
# The cache key of one write call built through engine.augment.requests with a default config (identity 'teacher-id', round 1).
BEFORE_KEY = "92f995c6aeb98e97d1297398f74ab572046f0f49d74116d3576bba881ba7d193"

MISS = Example(input="It's not that the movie is bad, it's that it never decides what it wants to be.",
               target=" negative", answer="negative")
GROUNDING = [Example(input="A warm, funny film.", target=" positive", answer="positive"),
             Example(input="Sharp writing and a great cast.", target=" positive", answer="positive")]
PROBLEM = Example(input="Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
                        "How many clips did Natalia sell altogether in April and May?",
                  target=" Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72", answer="72")
QUESTION = Example(input="The court held that the contract was void because", target=" B", answer="B",
                   choices=("it was signed", "it lacked consideration", "it was oral"))


def sentiment() -> Task:
    """The classification task of the captured prompts."""
    return make_task(TaskConfig(kind="classification", labels=["negative", "positive"], prompt="Review: {input}\nSentiment:",
                                description="Sentiment of a review snippet."))


def captured_cases(div: Diversity | None = None) -> dict[str, tuple[list[dict[str, str]], dict[str, Any]]]:
    """The cases the BEFORE hashes were taken from (with `div` passed when given)."""
    extra: dict[str, Any] = {} if div is None else {"diversity": div}
    sent, math = sentiment(), make_task(TaskConfig(kind="math"))
    free, mc = make_task(TaskConfig(kind="free_text")), make_task(TaskConfig(kind="multiple_choice", labels=["A", "B", "C"]))
    capital = Example(input="Capital of Peru?", target=" Lima", answer="Lima")
    return {
        "classification": (sent.teacher_messages(MISS, " positive", 3, is_miss=True, grounding=GROUNDING, **extra),
                           sent.teacher_schema(3)),
        "classification_k1": (sent.teacher_messages(MISS, None, 1, is_miss=False, grounding=(), **extra),
                              sent.teacher_schema(1)),
        "math": (math.teacher_messages(PROBLEM, "96", 2, grounding=GROUNDING[:1], **extra), math.teacher_schema(2)),
        "free_text": (free.teacher_messages(capital, "Cusco", 2, grounding=GROUNDING, **extra), free.teacher_schema(2)),
        "multiple_choice": (mc.teacher_messages(QUESTION, " A", 2, grounding=GROUNDING[:1], **extra), mc.teacher_schema(2)),
    }


def digest(messages: list[dict[str, str]], schema: dict[str, Any]) -> str:
    """The hash BEFORE holds."""
    payload = json.dumps({"messages": messages, "schema": schema}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


def miss_target(cfg: RunConfig, ex: Example = MISS, k: int = 3) -> Target:
    """A seed row the student missed, as the augment phase sees it."""
    row = StoredExample.from_row(dict(example_row(1, "seed", ex), id=5, reason=None))
    prediction = Prediction(run_id=1, round=0, example_id=5, split="seed", output=" positive", extracted="positive",
                            correct=0, confidence=None)
    return Target(row=row, prediction=prediction, is_miss=True, k=k)


def user_request(messages: list[dict[str, str]]) -> str:
    """The request (the last user message)."""
    return messages[-1]["content"]


# --- defaults: byte-identical prompts, schemas and keys ------------------------------------------------------------------
@pytest.mark.parametrize("div", [None, Diversity()], ids=["no_argument", "empty_levers"])
def test_defaults_leave_every_prompt_and_schema_byte_identical(div: Diversity | None) -> None:
    cases = captured_cases(div)
    assert {name: digest(*case) for name, case in cases.items()} == BEFORE
    assert user_request(cases["classification"][0]) == BEFORE_CLASSIFICATION_REQUEST


def test_default_config_keeps_the_cache_key_of_a_write_call() -> None:
    cfg = resolve({"task": {"preset": "rotten_tomatoes"}, "loop": {"examples_per_miss": 3}})
    assert cfg.augment.taboo_words == 0 and cfg.augment.show_earlier == 0
    assert not cfg.augment.differ and cfg.augment.hot_retry == 0
    task, target = make_task(cfg.task), miss_target(cfg)
    request = write_request(task, cfg, "teacher-id", 1, target, GROUNDING[:1], ["an earlier candidate, ignored: off"])
    assert request.key == BEFORE_KEY
    assert request.key == cache_key("teacher-id", teacher_messages(task, cfg, target, GROUNDING[:1]), task.teacher_schema(3),
                                    0.7, 0.95, 384, request_seed(cfg, 1, target))


def test_every_teacher_template_declares_the_lever_inputs() -> None:
    for name in ("classification", "free_text", "math", "multiple_choice"):
        assert {"taboo", "earlier", "differ"} <= load_template(name).inputs


# --- lever 1: taboo words ------------------------------------------------------------------------------------------------
def test_content_words_leave_out_stopwords_and_keep_the_longest() -> None:
    assert content_words("It's not that the movie is bad, it's that it never decides what it wants to be.", 12) == \
        ["movie", "bad", "never", "decides", "wants"]
    assert content_words("Spielberg's film, the FILM and films don't", 12) == ["Spielberg", "film", "films"]
    words = content_words(PROBLEM.input, 3)
    assert words == ["Natalia", "friends", "altogether"]  # past the cap the longest, shown in text order
    assert content_words("a the of", 12) == [] and content_words(PROBLEM.input, 0) == []


@pytest.mark.parametrize("name", ["classification", "math", "free_text", "multiple_choice"])
def test_taboo_words_appear_in_each_prompt(name: str) -> None:
    div = Diversity(taboo=("zeppelin", "marmalade"))
    request = user_request(captured_cases(div)[name][0])
    assert "Do not use any of these words from the" in request and "zeppelin, marmalade." in request
    assert digest(*captured_cases(div)[name]) != BEFORE[name]


def test_taboo_words_come_from_the_miss_and_respect_the_cap() -> None:
    cfg = resolve({"task": {"preset": "gsm8k"}, "loop": {"examples_per_miss": 2}, "augment": {"taboo_words": 4}})
    task, target = make_task(cfg.task), miss_target(cfg, PROBLEM, k=2)
    assert diversity(cfg, target).taboo == ("Natalia", "clips", "friends", "altogether")
    request = user_request(teacher_messages(task, cfg, target, []))
    assert "in the new problems: Natalia, clips, friends, altogether." in request
    assert request.index("Do not use") > request.index("Problem the student got wrong")


# --- lever 2: earlier candidates -----------------------------------------------------------------------------------------
def test_earlier_candidates_per_parent_newest_first_without_copies() -> None:
    rows = [StoredExample.from_row({**example_row(1, "synthetic", MISS), "reason": None, **r}) for r in [
        {"id": 5, "input": MISS.input, "parent_id": None, "origin_round": None, "status": "kept"},
        {"id": 10, "input": "Old round-0 text.", "parent_id": 5, "origin_round": 0, "status": "kept"},
        {"id": 11, "input": MISS.input.upper(), "parent_id": 5, "origin_round": 0, "status": "rejected"},  # a copy
        {"id": 12, "input": "Round-1 text.", "parent_id": 5, "origin_round": 1, "status": "rejected"},
        {"id": 13, "input": "round 1 text", "parent_id": 5, "origin_round": 1, "status": "kept"},  # same normalised
        {"id": 14, "input": "Another parent's text.", "parent_id": 6, "origin_round": 0, "status": "kept"},
        {"id": 15, "input": "This round's own text.", "parent_id": 5, "origin_round": 2, "status": "pending"},
    ]]
    assert earlier_candidates(rows, 2, 6) == {5: ["Round-1 text.", "Old round-0 text."], 6: ["Another parent's text."]}
    assert earlier_candidates(rows, 2, 1) == {5: ["Round-1 text."], 6: ["Another parent's text."]}
    assert earlier_candidates(rows, 1, 6) == {5: ["Old round-0 text."], 6: ["Another parent's text."]}
    assert earlier_candidates(rows, 2, 0) == {}


@pytest.mark.parametrize("name", ["classification", "math", "free_text", "multiple_choice"])
def test_earlier_candidates_appear_in_each_prompt(name: str) -> None:
    request = user_request(captured_cases(Diversity(earlier=("First try about a zeppelin.", "Second try.")))[name][0])
    assert "Already written from this" in request
    assert "\n- First try about a zeppelin.\n- Second try." in request


def test_earlier_candidates_reach_the_prompt_only_when_switched_on() -> None:
    on = resolve({"task": {"preset": "rotten_tomatoes"}, "loop": {"examples_per_miss": 3}, "augment": {"show_earlier": 2}})
    task, target = make_task(on.task), miss_target(on)
    request = user_request(teacher_messages(task, on, target, [], ["A zeppelin review."]))
    assert "write something different from each of these:\n- A zeppelin review." in request
    assert request.endswith("Now write the 3 new texts; the correct label of each is negative.")


# --- lever 3: several examples per call that must differ --------------------------------------------------------------
@pytest.mark.parametrize("name", ["classification", "math", "free_text", "multiple_choice"])
def test_differ_instruction_appears_in_each_prompt_asking_several(name: str) -> None:
    request = user_request(captured_cases(Diversity(differ=True))[name][0])
    assert "differ from one another as much as from the" in request
    assert "own situation, details, wording and sentence structure" in request
    # "its own topic" sent the 1.5B teacher off the task's subject (cars, phones, restaurants as movie reviews: issue 29)
    assert "topic" not in request.split("differ from one another")[1]
    assert "same kind of subject as the" in request


def test_differ_asks_and_requires_distinct_items_only_for_several() -> None:
    cfg = resolve({"task": {"preset": "rotten_tomatoes"}, "loop": {"examples_per_miss": 3}, "augment": {"differ": True}})
    task = make_task(cfg.task)
    several, one = miss_target(cfg, k=3), miss_target(cfg, k=1)
    assert "Make the 3 new texts differ from one another" in user_request(teacher_messages(task, cfg, several, []))
    schema = teacher_schema(task, cfg, several)
    assert schema["properties"]["examples"]["uniqueItems"] is True
    same = {"text": "A zeppelin of a film, all hot air.", "label": "negative"}
    other = {"text": "Two hours I will never get back.", "label": "negative"}
    assert check_reply(json.dumps({"what_made_it_hard": "x", "examples": [same, same, other]}), schema)[0] is None
    assert check_reply(json.dumps({"what_made_it_hard": "x", "examples": [same, other, dict(other, text="Dull.")]}),
                       schema)[0] is not None
    # one example a call: nothing to differ from, so prompt and schema stay today's
    assert "differ" not in user_request(teacher_messages(task, cfg, one, []))
    assert teacher_schema(task, cfg, one) == task.teacher_schema(1)


# --- lever 4: a hotter retry after a copy ----------------------------------------------------------------------------
def test_copies_its_seed_uses_the_filters_duplicate_test() -> None:
    seed = MISS.input
    assert copies_its_seed(seed, [seed, seed.upper() + "!!"], 0.9)
    assert copies_its_seed(seed, ["It's not that the movie is bad, it's that it never decides what it wanted to be."], 0.9)
    assert not copies_its_seed(seed, [seed, "A zeppelin of a film, all hot air and no destination."], 0.9)
    assert not copies_its_seed(seed, [], 0.9)


def test_hot_request_is_hotter_capped_and_keyed_apart() -> None:
    cfg = resolve({"task": {"preset": "rotten_tomatoes"}, "teacher": {"temperature": 1.3},
                   "augment": {"hot_retry": 0.3}})
    task, target = make_task(cfg.task), miss_target(cfg, k=1)
    request = write_request(task, cfg, "teacher-id", 0, target, [])
    hot = hot_request(cfg, "teacher-id", request)
    assert hot.temperature == 1.5 and hot.seed != request.seed and hot.key != request.key
    assert (hot.messages, hot.schema, hot.max_tokens, hot.top_p) == (request.messages, request.schema, request.max_tokens,
                                                                    request.top_p)
    assert hot.key == cache_key("teacher-id", request.messages, request.schema, 1.5, request.top_p, request.max_tokens,
                                hot.seed)
    already = resolve({"task": {"preset": "rotten_tomatoes"}, "teacher": {"temperature": 1.8}, "augment": {"hot_retry": 0.3}})
    assert hot_request(already, "teacher-id", write_request(task, already, "teacher-id", 0, target, [])).temperature == 1.8


def test_each_lever_has_its_arm() -> None:
    assert BUILTIN["taboo"].overrides == ("augment.taboo_words=12",)
    assert BUILTIN["shown_earlier"].overrides == ("augment.show_earlier=6",)
    assert BUILTIN["several_per_call"].overrides == ("augment.differ=true",)
    assert BUILTIN["hot_retry"].overrides == ("augment.hot_retry=0.3",)
    assert len(BUILTIN["diverse"].overrides) == 4
    for name in ("taboo", "shown_earlier", "several_per_call", "hot_retry", "diverse"):
        doc: dict[str, Any] = {}
        apply_overrides(doc, list(BUILTIN[name].overrides))
        assert resolve(doc).augment != RunConfig().augment


def test_hot_retry_on_a_tiny_run(tiny_gguf: Path, tmp_path: Path) -> None:
    """Round 0's write calls are in the cache as copies of their seed (all but the first); resumed, the run asks the
    real tiny teacher once more for each copied call, hotter and under a key of its own."""
    doc = tiny_config_doc(tiny_gguf, tmp_path / "l2l.db", confidence_threshold=0.99)
    doc["augment"] = {"hot_retry": 0.3}
    cfg = resolve(doc)
    store = Store(cfg.store)
    run_id = create_run(store, prepare(cfg))

    def stop_after_eval(message: str, kind: str) -> None:
        if message.startswith("round 0: seed acc"):
            request_stop(store, run_id)

    assert Loop(store, run_id, on_log=stop_after_eval).run() == "stopped"
    assert store.round(run_id, 0).phase == "augment"

    # the round's write calls, built as the augment phase builds them
    task = make_task(cfg.task)
    preds = {p.example_id: p for p in store.predictions(run_id, 0)}
    seeds = store.examples(run_id, split="seed")
    pool = [r for r in seeds if r.id in preds]
    targets = choose_targets(cfg, pool, [r for r in pool if is_miss(preds[r.id], cfg.loop.confidence_threshold)], 0, preds)
    assert len(targets) >= 2
    teacher = open_run_teacher(cfg)
    identity = teacher.identity()
    teacher.close()
    requests = [write_request(task, cfg, identity, 0, t, [example_from_row(r) for r in grounding(task, t.row, seeds,
                                                                                                   cfg.checks.grounding)])
                for t in targets]
    for i, (target, request) in enumerate(zip(targets, requests, strict=True)):
        text = " ".join(target.row.input[:290].split(" ")[:-1]) if len(target.row.input) > 300 else target.row.input
        if i == 0:
            text = "A zeppelin of a film: all hot air, no destination, and two hours I will never get back."
        reply = {"what_made_it_hard": "a copy", "examples": [{"text": text, "label": target.row.answer}] * target.k}
        assert check_reply(json.dumps(reply), request.schema)[1] is None
        store.save_teacher_call({"key": request.key, "model": identity, "prompt": json.dumps(request.messages),
                                 "response": json.dumps(reply), "ok": 1, "tokens_in": 0, "tokens_out": 0, "seconds": 0.0,
                                 "error": None, "run_id": run_id, "round": 0, "purpose": "write"})

    assert Loop(store, run_id).run() == "finished"
    r0 = store.round(run_id, 0)
    augment, filtered = r0.augment, r0.filter
    copied = len(targets) - 1
    assert augment["copy_calls"] == copied and augment["copy_call_share"] == round(copied / len(targets), 4)
    assert augment["hot_retries"] == copied and augment["hot_temperature"] == pytest.approx(1.1)
    assert augment["requests"] == len(targets) + copied and augment["cache_hits"] == len(targets)
    assert filtered["kept_per_call"] == round(r0.kept / augment["requests"], 4)
    assert filtered["kept_share"] == round(r0.kept / r0.generated, 4)

    hot = [hot_request(cfg, identity, r) for r in requests]
    assert store.teacher_call(hot[0].key) is None  # the call that did not copy is not retried
    candidates = store.examples(run_id, split="synthetic")
    for target, request, retry in zip(targets[1:], requests[1:], hot[1:], strict=True):
        assert retry.key != request.key and retry.temperature == pytest.approx(1.1) and request.temperature == 0.8
        call = store.teacher_call(retry.key)
        assert call is not None and call.round == 0 and call.purpose == "write" and call.model == identity
        assert (call.tokens_out or 0) > 0  # written by the tiny teacher now, not from the cache
        if call.ok:
            assert any(c.teacher_call == retry.key and c.parent_id == target.row.id for c in candidates)
    assert any(store.teacher_call(h.key).ok for h in hot[1:])  # the hotter calls gave candidates
    # the copies stay candidates, and the filter rejects them as duplicates of their seed
    copies = [c for c in candidates if c.teacher_call in {r.key for r in requests[1:]}]
    assert copies and all(c.status == "rejected" for c in copies)

    # round 0's candidates are what augment.show_earlier would show in round 1
    earlier = earlier_candidates(candidates, 1, 6)
    assert earlier[targets[0].row.id] == ["A zeppelin of a film: all hot air, no destination, and two hours I will "
                                             "never get back."]
    store.close()
