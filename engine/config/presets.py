"""The paper's tasks as presets: values that fill the config fields a user left unset."""

from __future__ import annotations

import copy
from typing import Any

from models.errors import ConfigError

_SENTIMENT = ["negative", "positive"]
_BINARY_MAP = {"0": "negative", "1": "positive"}
_TREC_LABELS = ["abbreviation", "description", "entity", "human", "location", "number"]
# TREC's coarse codes ('DESC:manner How did ...' in the original .label files) and the integer ids of the
# Hugging Face copy (ClassLabel order ABBR, ENTY, DESC, HUM, LOC, NUM) both map to the label names.
_TREC_MAP = {
    "ABBR": "abbreviation", "DESC": "description", "ENTY": "entity", "HUM": "human", "LOC": "location", "NUM": "number",
    "0": "abbreviation", "1": "entity", "2": "description", "3": "human", "4": "location", "5": "number",
}
_MATH_SUBJECTS = ["Algebra", "Counting & Probability", "Geometry", "Intermediate Algebra", "Number Theory", "Prealgebra",
                  "Precalculus"]
_SNIPS_INTENTS = ["AddToPlaylist", "BookRestaurant", "GetWeather", "PlayMusic", "RateBook", "SearchCreativeWork",
                  "SearchScreeningEvent"]

# section -> field -> value; only fields the user did not set are filled.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "gsm8k": {
        "task": {"kind": "math", "prompt": "Question: {input}\nAnswer:",
                 "description": "Grade-school math word problems that take 2 to 8 steps of basic arithmetic; "
                                "the solution ends with a line '#### N' giving the final number."},
        "data": {"input_field": "question", "target_field": "answer"},
    },
    "mawps": {
        "task": {"kind": "math", "prompt": "Question: {input}\nAnswer:",
                 "description": "Simple arithmetic word problems (one or two operations) with a numeric answer."},
        "data": {"input_field": "input", "target_field": "target"},
    },
    "sst2": {
        "task": {"kind": "classification", "labels": _SENTIMENT, "prompt": "Review: {input}\nSentiment:",
                 "description": "Sentiment of a sentence from a movie review: negative or positive."},
        "data": {"input_field": "text", "target_field": "label", "label_map": _BINARY_MAP},
    },
    "rotten_tomatoes": {
        "task": {"kind": "classification", "labels": _SENTIMENT, "prompt": "Review: {input}\nSentiment:",
                 "description": "Sentiment of a Rotten Tomatoes review snippet: negative or positive."},
        # the Hugging Face copy stores 0/1; label names pass through the map unchanged
        "data": {"input_field": "text", "target_field": "label", "label_map": _BINARY_MAP},
    },
    "trec": {
        "task": {"kind": "classification", "labels": _TREC_LABELS, "prompt": "Question: {input}\nType:",
                 "description": "What kind of answer a question asks for: abbreviation, description (a definition, "
                                "reason or manner), entity (a thing, animal, colour, ...), human (a person or group), "
                                "location, or number (a count, date, amount, ...)."},
        "data": {"input_field": "text", "target_field": "coarse_label", "label_map": _TREC_MAP},
    },
    "snips": {
        "task": {"kind": "classification", "labels": _SNIPS_INTENTS, "prompt": "Utterance: {input}\nIntent:",
                 "description": "The intent of a voice-assistant request: " + ", ".join(_SNIPS_INTENTS) + "."},
        "data": {"input_field": "text", "target_field": "label"},
    },
    "math_topic": {
        "task": {"kind": "classification", "labels": _MATH_SUBJECTS, "prompt": "Problem: {input}\nSubject:",
                 "description": "The subject of a competition math problem (LaTeX allowed): " + ", ".join(_MATH_SUBJECTS)
                                + ". Each input is a problem statement to solve, never its answer or solution."},
        "data": {"input_field": "problem", "target_field": "type"},
    },
    "mmlu_stem": {
        "task": {"kind": "multiple_choice", "labels": ["A", "B", "C", "D"], "choice_format": "text",
                 "prompt": "Question: {input}\n{choices}\nAnswer:",
                 "description": "A four-option multiple-choice exam question in a science, technology, engineering or "
                                "mathematics subject (MMLU-STEM); the answer is the correct option."},
        "data": {"input_field": "question", "target_field": "answer", "choices_field": "choices"},
    },
    "casehold": {
        "task": {"kind": "multiple_choice", "labels": ["A", "B", "C", "D", "E"],
                 "prompt": "{input}\nWhich holding fills <HOLDING>?\n{choices}\nAnswer:",
                 "description": "A passage from a US court decision citing a case, with the cited holding replaced by "
                                "<HOLDING>; pick which of five holdings the citation supports."},
        "data": {"input_field": "citing_prompt", "target_field": "label",
                 "choices_field": "holding_0,holding_1,holding_2,holding_3,holding_4"},
    },
}


def apply_preset(doc: dict[str, Any]) -> dict[str, Any]:
    """The raw config mapping with the keys the user left out filled from task.preset (a new mapping; unchanged
    when there is no preset or it is not a name; an unknown name is a ConfigError)."""
    name = (doc.get("task") or {}).get("preset") if isinstance(doc.get("task"), dict) else None
    if not isinstance(name, str):
        return doc
    preset = PRESETS.get(name)
    if preset is None:
        raise ConfigError(f"task.preset: unknown preset {name!r} (known: {', '.join(sorted(PRESETS))})")
    out = copy.deepcopy(doc)
    for section_name, values in preset.items():
        section = out.setdefault(section_name, {})
        if isinstance(section, dict):
            for key, value in values.items():
                section.setdefault(key, copy.deepcopy(value))
    return out
