"""Checks on teacher-written candidates that need no model: text about an example (meta_text), length, requested
label, control characters left by JSON escapes, another language than the seeds', the teacher prompt echoed back, and
the per-label cap that keeps the seed's label mix."""

from __future__ import annotations

import random
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from engine.tasks.base import Example, Task

# Nouns an input of a task is usually called; those the task's prompt or description use become meta patterns.
INPUT_NOUNS = ("review", "text", "sentence", "passage", "snippet", "tweet", "comment", "post", "message", "email",
               "ticket", "utterance", "question", "problem", "statement", "request", "query", "article", "document",
               "story", "headline", "description", "example", "input", "context", "excerpt", "quote")
# Verbs that make "<the|this> <noun>" a sentence about the example rather than part of one.
_ABOUT_VERBS = ("is", "was", "expresses", "expressed", "describes", "described", "shows", "conveys", "indicates",
                "suggests", "asks", "talks", "discusses", "mentions", "praises", "criticizes", "criticises", "highlights",
                "seems", "appears", "contains", "focuses", "reads", "sounds", "presents", "states", "requires",
                "involves", "deals", "reflects", "gives", "has", "uses", "features", "provides", "compares", "explains",
                # e.g. "The review emphasizes the playful fun for preschool set..." (kept by sweep 9's one_shot arm)
                "emphasizes", "emphasises", "stresses", "notes", "argues", "claims", "complains", "concludes",
                "recommends", "summarizes", "summarises")
_AUTHORS = ("reviewer", "author", "writer", "speaker", "narrator", "critic", "user", "customer", "poster")
_AUTHOR_VERBS = ("is", "was", "expresses", "expressed", "feels", "felt", "thinks", "thought", "says", "said", "describes",
                 "praises", "criticizes", "criticises", "loved", "loves", "likes", "liked", "hated", "hates", "enjoyed",
                 "enjoys", "found", "finds", "seems", "appears", "highlights", "mentions", "notes", "believes", "considers",
                 "gives", "gave", "calls", "called", "recommends", "points", "argues", "wants", "asks",
                 # reporting verbs, e.g. "The reviewer states that the movie was 'nothing special'" (kept by a sweep)
                 "states", "stated", "writes", "wrote", "claims", "claimed", "noted", "argued", "described", "praised",
                 "criticized", "criticised", "mentioned", "highlighted", "recommended", "suggests", "suggested",
                 "concludes", "concluded", "complains", "complained", "comments", "commented", "observes", "observed",
                 "explains", "explained", "admits", "admitted", "laments", "lamented", "expects", "expected")
_GENERIC = (
    rf"\b(?:the|this|that)\s+(?:{'|'.join(_AUTHORS)})\s+(?:\w+ly\s+)?(?:{'|'.join(_AUTHOR_VERBS)})\b",
    r"\bindicating\s+(?:a|an|that)\b",
)
_ANSWER_NOUN = re.compile(r"(\w+)\s*:\s*$")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")


class MetaText:
    """Patterns that mark a candidate as talking about an example of the task instead of being one."""

    def __init__(self, task: Task, extra: Sequence[str] = ()) -> None:
        words = " ".join([task.template, task.cfg.description or ""]).casefold()
        nouns = {n for n in INPUT_NOUNS if re.search(rf"\b{n}s?\b", words)} | {task.input_noun}
        patterns = list(_GENERIC)
        if nouns:
            patterns.append(rf"\b(?:the|this|that)\s+(?:{'|'.join(sorted(map(re.escape, nouns)))})s?\s+"
                            rf"(?:\w+ly\s+)?(?:{'|'.join(_ABOUT_VERBS)})\b")
        answer = _ANSWER_NOUN.search(task.template)
        labels = [label for label in getattr(task, "labels", []) if len(label) > 1]
        if labels and task.kind == "classification":
            alternatives = "|".join(re.escape(label) for label in sorted(labels, key=len, reverse=True))
            patterns.append(rf"\b(?:{alternatives})\s+(?:sentiment|tone|label|review|opinion|overall)\b")
            patterns.append(rf"\b(?:overall|overwhelmingly|clearly|mostly|generally)\s+(?:{alternatives})\b")
            patterns.append(rf"\b(?:labell?ed|classified|categori[sz]ed|tagged)\s+as\s+(?:an?\s+)?(?:{alternatives})\b")
        if answer and answer.group(1).casefold() not in ("answer", "output"):
            noun = re.escape(answer.group(1))  # e.g. "Sentiment:" → "the sentiment is", "sentiment of this"
            patterns.append(rf"\b(?:the|its|overall)\s+{noun}\s+(?:is|was|here)\b|\b{noun}\s+of\s+(?:this|the)\b")
        self.nouns = sorted(nouns)
        self.patterns = [re.compile(p, re.IGNORECASE) for p in [*patterns, *extra]]

    def match(self, text: str) -> str | None:
        """The first piece of the text a pattern finds, or None."""
        for pattern in self.patterns:
            m = pattern.search(text)
            if m:
                return m.group(0)
        return None


_DOLLAR = re.compile(r"(?<!\\)\$")  # a $ that is not the escaped literal \$


def unpaired_dollars(text: str) -> bool:
    """Whether the text opens $...$ math it never closes (an odd number of unescaped $)."""
    return len(_DOLLAR.findall(text)) % 2 == 1


def seeds_pair_dollars(inputs: Iterable[str]) -> bool:
    """Whether the seeds write math between paired $: at least half of them hold a $, and every $ pairs. Prices in
    word problems ("$12 an hour") leave a $ unpaired, which keeps the check off for such tasks."""
    texts = list(inputs)
    with_math = [t for t in texts if "$" in t]
    return bool(texts) and 2 * len(with_math) >= len(texts) and not any(unpaired_dollars(t) for t in with_math)


# A request at the start of a clause ("Find $x$.", "..., then compute", "\\end{align*}compute") or a question word there
# ("How many", "For what", "..., what is"), or a question mark anywhere. Measured on the shared datasets (stop 22): MATH
# 99.5% / 99.9% of train / test problems ask, GSM8K 99.97% / 99.92%, MAWPS 100%, MMLU-STEM 70% (cloze stems), reviews 5%.
_VERBS = ("find|compute|determine|evaluate|solve|simplify|express|calculate|show|prove|give|write|enter|list|"
          "rationalize|factor|expand|convert|round|estimate|name|identify|graph|sketch|plot|use|choose|select|"
          "approximate|state|describe|explain|rewrite|complete|fill|put|arrange|order|match|classify|check|verify|decide")
_ASKS = re.compile(
    r"\?"
    rf"|(?:^|[.!:;)]\s+|\n\s*|[}}\]$,]\s*|\b(?:then|and)\s+)(?:\w+ly\s+)?(?:{_VERBS})\b"  # a request opening a clause
    r"|(?:^|[.!:;)]\s+|\n\s*|\b(?:for|wondering)\s+)(?:what|how|which|who|whose|when|where|why)\b"
    r"|,\s*(?:what|how)\b",  # "If x = 2, what is y": but not ", which means", a statement's
    re.IGNORECASE)
ASKING_SEEDS = 0.95  # the check is on for a task when at least this share of its seeds ask something


def asks(text: str) -> bool:
    """Whether the text asks something: a question mark, or a request or question word opening a clause."""
    return _ASKS.search(text) is not None


def seeds_ask(inputs: Iterable[str]) -> bool:
    """Whether the task's inputs are questions: nearly every seed asks something (math problems do, reviews and
    multiple-choice stems completed by their options do not)."""
    texts = list(inputs)
    return bool(texts) and sum(map(asks, texts)) >= ASKING_SEEDS * len(texts)


def has_control_chars(text: str) -> bool:
    """Whether any control character other than a line break is left."""
    return _CONTROL.search(text) is not None


@dataclass(frozen=True)
class LengthRange:
    """Candidates must be between the seeds' shortest / factor and longest × factor, in words."""

    low: float
    high: float

    @classmethod
    def of_seeds(cls, seeds: Iterable[str], factor: float) -> LengthRange | None:
        """The allowed range for these seed inputs (None when the check is off or there are no seeds)."""
        counts = [len(text.split()) for text in seeds]
        if not counts or factor <= 0:
            return None
        return cls(low=min(counts) / factor, high=max(counts) * factor)

    def allows(self, text: str) -> bool:
        """Whether the text's word count lies inside the range."""
        return self.low <= len(text.split()) <= self.high


def label_mismatch(task: Task, ex: Example) -> bool:
    """A classification candidate labelled otherwise than the example it was written for."""
    requested = ex.meta.get("requested_label")
    return task.kind == "classification" and requested is not None and requested.casefold() != ex.answer.casefold()


def balance_cap(current: Counter[str], seed_share: dict[str, float], candidates: list[tuple[int, str]],
                tolerance: float, seed: int) -> set[int]:
    """Ids of candidates to keep so that no label's share of the training set rises above its seed share + tolerance.

    Labels take turns (in a seeded order, candidates in their given order), so one label's early candidates cannot
    use up the room before the others are considered."""
    queues: dict[str, list[int]] = {}
    for cid, label in candidates:
        queues.setdefault(label, []).append(cid)
    order = sorted(queues)
    random.Random(seed).shuffle(order)
    counts = Counter(current)
    total = sum(counts.values())
    kept: set[int] = set()
    progressed = True
    while progressed:
        progressed = False
        for label in order:
            if not queues[label]:
                continue
            if (counts[label] + 1) / (total + 1) <= seed_share.get(label, 0.0) + tolerance:
                kept.add(queues[label].pop(0))
                counts[label] += 1
                total += 1
                progressed = True
    return kept


# --- language -------------------------------------------------------------------------------------------------------
# Short function-word lists: a text's language is the one whose words it uses clearly more than any other's.
_STOPWORDS = {
    "en": "a the and is of to in it that this with was for but not you are on as be have his her its they what which "
          "who an at by from or has had been were would could there their than so too very just about".split(),
    "es": "el la los las de que y en un una es por con no para lo se del al muy pero como más esta este está son "
          "también sin sobre todo hay fue ser ni sus le".split(),
    "pt": "o a os as de que e em um uma é não para com do da dos das no na mas muito se mais por como foi são também "
          "sem sobre isso ele ela seu sua".split(),
    "fr": "le la les de des et est un une que qui pas pour dans ce il elle en du au avec mais très sur ne se son sa "
          "ses sont plus cette comme tout être".split(),
    "de": "der die das und ist nicht ein eine zu den mit es von sich auf für dem auch sehr aber ich sie war wie "
          "noch nur oder wird bei".split(),
    "it": "il la di che e è un una per non con sono del della gli le ma molto anche questo questa come più nel "
          "alla dei".split(),
    "nl": "de het een en van is niet dat met op te voor zijn maar ook heel die er aan om dit wat".split(),
}
_WEIGHT: dict[str, dict[str, float]] = {}
for _lang, _words in _STOPWORDS.items():
    for _word in _words:
        _WEIGHT.setdefault(_word, {})[_lang] = 0.0
for _word, _langs in _WEIGHT.items():  # a word shared by k languages is worth 1/k to each
    for _lang in _langs:
        _langs[_lang] = 1 / len(_langs)
_SCRIPTS = {"CYRILLIC": "cyrillic", "GREEK": "greek", "ARABIC": "arabic", "HEBREW": "hebrew", "CJK": "chinese",
            "HIRAGANA": "japanese", "KATAKANA": "japanese", "HANGUL": "korean", "DEVANAGARI": "hindi", "THAI": "thai",
            "ARMENIAN": "armenian", "GEORGIAN": "georgian", "BENGALI": "bengali", "TAMIL": "tamil"}
_WORD = re.compile(r"[^\W\d_]+")
# Maths is no language: LaTeX spans, environments and commands, and Asymptote drawings are left out before the words are
# counted: the variable "a" read as Portuguese and "y" as Spanish put 2% of real MATH problems in another language.
_MATH = re.compile(r"\\begin\{([a-z]+\*?)\}.*?\\end\{\1\}|\$\$.*?\$\$|\$[^$]*\$|\\\[.*?\\\]|\\\(.*?\\\)|\\[A-Za-z]+"
                   r"|\[asy\].*?\[/asy\]", re.S)


# Greek letters are left out: maths and science write them as symbols (π, θ, Ω) in any language.
_STRAY_SCRIPTS = frozenset(_SCRIPTS.values()) - {"greek"}


def _script(letter: str) -> str:
    """The writing script of one letter: a name of _SCRIPTS, 'latin', or 'other'."""
    name = unicodedata.name(letter, "")
    return _SCRIPTS.get(name.split(" ", 1)[0], "latin" if name.startswith("LATIN") else "other")


def writing_scripts(text: str) -> frozenset[str]:
    """The non-Latin writing scripts (Greek aside) any of the text's letters belong to, however few."""
    return frozenset(script for ch in text if ch.isalpha() and not ch.isascii()
                     if (script := _script(ch)) in _STRAY_SCRIPTS)


def guess_language(text: str) -> str | None:
    """A cheap guess: a non-Latin script that holds most letters, else the language whose function words clearly
    dominate (at least 2 of them and twice the runner-up); None when unsure (short text, numbers, formulas)."""
    letters = [ch for ch in text if ch.isalpha()]
    if len(letters) < 4:
        return None
    scripts = Counter(map(_script, letters))
    script, count = scripts.most_common(1)[0]
    if script not in ("latin", "other") and count >= len(letters) / 2:
        return "japanese" if script == "chinese" and scripts["japanese"] else script
    if scripts["latin"] < len(letters) / 2:
        return None
    scores: dict[str, float] = {}
    for word in _WORD.findall(_MATH.sub(" ", text).casefold()):
        for lang, weight in _WEIGHT.get(word, {}).items():
            scores[lang] = scores.get(lang, 0.0) + weight
    ranked = sorted(scores.items(), key=lambda item: -item[1])[:2] + [("", 0.0), ("", 0.0)]
    (best, top), (_, second) = ranked[0], ranked[1]
    return best if top >= 2 and top >= 2 * second else None


class LanguageCheck:
    """Candidates must be in the seeds' majority language or their parent's, and hold no letter of a script that no
    seed and not their parent uses (two Chinese characters inside an English review); unsure guesses pass."""

    def __init__(self, seeds: Iterable[str]) -> None:
        texts = list(seeds)
        found = Counter(lang for lang in map(guess_language, texts) if lang is not None)
        self.majority = found.most_common(1)[0][0] if found else None
        self.scripts: frozenset[str] = frozenset().union(*map(writing_scripts, texts))

    def allows(self, text: str, parent: str | None) -> bool:
        """Whether the text may be kept (its parent's text, when known, may add its own language and scripts)."""
        stray = writing_scripts(text) - self.scripts
        if stray and not stray <= writing_scripts(parent or ""):
            return False
        if self.majority is None:
            return True
        lang = guess_language(text)
        if lang is None or lang == self.majority:
            return True
        return parent is not None and guess_language(parent) == lang


# --- the teacher prompt echoed back ---------------------------------------------------------------------------------
ECHO_WORDS = 6  # a run of this many words of the teacher's instructions inside a candidate is an echo


def shingles(text: str, n: int = ECHO_WORDS) -> set[tuple[str, ...]]:
    """Every run of n consecutive words (casefolded)."""
    words = re.findall(r"\w+", text.casefold())
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


_HEAD = re.compile(r"^\s*([^:\n]{3,60}):", re.MULTILINE)


def line_heads(text: str) -> set[str]:
    """The casefolded heads of a prompt's "Head: ..." lines that hold at least two words ("correct label")."""
    return {" ".join(m.group(1).casefold().split()) for m in _HEAD.finditer(text) if len(m.group(1).split()) >= 2}


class PromptEcho:
    """The fixed text of the task's teacher prompts (system message, instructions, worked example), without the
    example it was rendered with: a candidate repeating ECHO_WORDS words of it in a row, or one of its "Head:" lines
    ("Correct label: Algebra", "The student answered: ..." too short for a run), echoes the prompt."""

    def __init__(self, task: Task, sample: Example) -> None:
        texts = [m["content"] for m in task.teacher_messages(sample, None, 2, is_miss=True)]
        texts += [m["content"] for m in task.teacher_messages(sample, sample.target, 2, is_miss=True)]
        texts += [m["content"] for m in task.teacher_messages(sample, None, 1, is_miss=False)]
        if task.verifies:
            texts += [m["content"] for m in task.verify_messages(sample)]
        own_texts = (sample.input, sample.target, *(sample.choices or ()))
        own = set().union(*(shingles(t) for t in own_texts))
        self.shingles = set().union(*(shingles(t) for t in texts)) - own
        self.heads = set().union(*(line_heads(t) for t in texts)) - set().union(*(line_heads(t) for t in own_texts))

    def match(self, text: str) -> bool:
        """Whether the text repeats a run of the prompt's words or one of its line heads."""
        return not self.shingles.isdisjoint(shingles(text)) or not self.heads.isdisjoint(line_heads(text))
