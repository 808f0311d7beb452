"""Teacher replies are JSON whose strings may hold LaTeX written with single backslashes: read them as written."""

from __future__ import annotations

import json
import re
from typing import Any

# LaTeX commands that begin with n: after a backslash, these letters are the command, not JSON's \n line break.
LATEX_N_COMMANDS = frozenset({
    "nabla", "natural", "ncong", "ne", "nearrow", "neg", "neq", "newline", "nexists", "ngeq", "ngtr", "ni",
    "nleftarrow", "nLeftarrow", "nleftrightarrow", "nLeftrightarrow", "nleq", "nless", "nmid", "noindent",
    "nolimits", "nonumber", "normalsize", "not", "notin", "nparallel", "nprec", "nrightarrow", "nRightarrow", "nsim",
    "nsubseteq", "nsucc", "nsupseteq", "nu", "nvdash", "nvDash", "nwarrow",
})
# After a backslash: an escape JSON keeps (\" \\ \/ \uXXXX), a run of letters, or any other one character.
_ESCAPE = re.compile(r'\\(?:(?P<json>["\\/]|u[0-9a-fA-F]{4})|(?P<word>[A-Za-z]+)|(?P<other>.))', re.DOTALL)


def latex_escapes(raw: str) -> str:
    """The raw reply with every backslash JSON would misread doubled, so a LaTeX command written with one backslash
    (\\tan, \\frac, \\beta, \\[) reaches the text as written and JSON's \\b \\f \\r \\t never become control
    characters. \\" \\\\ \\/ \\uXXXX keep their JSON meaning, and so does \\n, except where it begins an n-command
    (\\neq, \\nabla) inside math ($...$, $$...$$, \\(...\\), \\[...\\])."""
    if "\\" not in raw:
        return raw
    out: list[str] = []
    i, in_string, math = 0, False, False
    while i < len(raw):
        ch = raw[i]
        m = _ESCAPE.match(raw, i) if ch == "\\" and in_string else None
        if m is not None:
            word, other = m.group("word"), m.group("other")
            if m.group("json") is not None or (word is not None and word[0] == "n"
                                               and not (math and word in LATEX_N_COMMANDS)):
                out.append(m.group(0))  # JSON's own escape, or a line break before text ("\nExpress your answer")
            elif other == "'":
                out.append("'")  # don\'t: an apostrophe escaped out of habit (no LaTeX in the real rows writes \')
            else:
                out.append("\\\\" + (word or other))  # \tan, \frac, \neq, \[: the backslash itself
                if other in ("(", "["):
                    math = True
                elif other in (")", "]"):
                    math = False
            i = m.end()
            continue
        if ch == '"':
            in_string, math = not in_string, False
        elif ch == "$" and in_string:
            math = not math
            ch = "$$" if raw.startswith("$$", i) else ch  # display math opens or closes once
        out.append(ch)
        i += len(ch)
    return "".join(out)


def loads_reply(raw: str) -> Any:
    """Parse a teacher reply, with LaTeX backslashes kept as written (raises json.JSONDecodeError)."""
    return json.loads(latex_escapes(raw))
