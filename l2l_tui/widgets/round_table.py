"""The round table of a run: sizes, misses, new examples, top rejection reasons, accuracies and time per phase;
and the detail line of one round (every reason, what was kept but noted, label mixes)."""

from __future__ import annotations

from typing import Any

from rich.text import Text

from engine.reports.run_report import PHASE_NAMES, pct
from l2l_tui.fmt import span
from l2l_tui.widgets.row_table import RowTable


class RoundTable(RowTable):
    """One row per round (engine.reports.run_report.round_rows); round 0 is the plain fine-tuning baseline, * marks the best."""

    COLUMNS = (("round", "round"), ("phase", "phase"), ("train", "train_size"), ("miss", "misses"), ("kept/rej", "new"),
               ("rejected", "reasons"), ("seed %", "seed"), ("val %", "val"), ("test %", "test"), ("loss", "loss"), ("train", "t_train"),
               ("eval", "t_eval"), ("teacher", "t_augment"), ("filter", "t_filter"))

    def show(self, rows: list[dict[str, Any]], best_round: int | None, frozen: bool = False) -> None:
        """Replace the rows."""
        cursor = self.cursor_row
        self.clear()
        for r in rows:
            label = f"{r['round']}{'*' if r['round'] == best_round else ''}{' base' if r['round'] == 0 else ''}"
            new = "-" if r["generated"] is None else f"{_n(r['kept'])}/{_n(r['rejected'])}"
            style = "bold" if r["round"] == best_round else ""
            cells = [label, r["phase"], _n(r["train_size"]), _n(r["misses"]), new, top_reasons(r.get("reasons") or {}),
                     pct(r["seed_acc"]), pct(r["val_acc"]),
                     pct(r["test_acc"]), "-" if r["train_loss"] is None else f"{r['train_loss']:.3f}",
                     *(span(r[f"{p}_s"], frozen) for p in PHASE_NAMES)]
            self.add_row(*(Text(str(c), style=style, justify="left" if i < 2 or i == 5 else "right") for i, c in enumerate(cells)),
                         key=str(r["round"]))
        if rows:
            self.move_cursor(row=min(max(cursor, 0), len(rows) - 1), scroll=False)


    @property
    def selected_round(self) -> int | None:
        """The round under the cursor."""
        return self.selected_int


# short names for the table's narrow column; the detail line and the example browser use the full ones
SHORT_REASONS = {
    "meta_text": "meta", "label_disagrees": "disagree", "not_a_task": "not task", "label_mismatch": "mismatch",
    "solve_disagrees": "solve", "copy_of_seed": "copy", "leaks_eval": "leak", "duplicate": "dup",
    "sibling_duplicate": "sibling", "label_balance": "balance", "control_chars": "ctrl", "unbalanced_math": "unpaired $", "not_a_question": "no question", "verify_failed": "unverified",
    "restatement": "restated", "over_budget": "budget",
}


def short_reason(reason: str) -> str:
    """A rejection reason in a few letters."""
    return SHORT_REASONS.get(reason, reason.replace("_", " ")[:10])


def top_reasons(reasons: dict[str, int], width: int = 18) -> str:
    """The most frequent reasons that fit the column: '12 meta·5 disagree', '6 mismatch +2' ('-' when none)."""
    ranked = sorted(((n, r) for r, n in reasons.items() if n), key=lambda nr: (-nr[0], nr[1]))
    if not ranked:
        return "-"
    text = f"{ranked[0][0]} {short_reason(ranked[0][1])}"
    for i, (n, reason) in enumerate(ranked[1:], 1):
        more = f"·{n} {short_reason(reason)}"
        rest = len(ranked) - i - 1
        if len(text) + len(more) + (len(f" +{rest}") if rest else 0) > width:
            return f"{text} +{len(ranked) - i}"
        text += more
    return text


def mix_text(mix: dict[str, int]) -> str:
    """A label mix as 'negative 5 / positive 3'."""
    return " / ".join(f"{label} {n}" for label, n in mix.items())


def round_detail(row: dict[str, Any] | None) -> Text:
    """One round in full: rejections by reason, flags, the training set's label mix, what the filter leaves for the next
    round, and what the student answered on validation."""
    if row is None:
        return Text("")
    text = Text.assemble((f"round {row['round']}", "bold"))
    reasons = sorted((row.get("reasons") or {}).items(), key=lambda kv: (-kv[1], kv[0]))
    parts: list[tuple[str, str]] = []
    if reasons:
        parts.append(("rejected ", " · ".join(f"{n} {reason}" for reason, n in reasons)))
    elif row.get("generated") is not None and row.get("rejected") == 0:
        parts.append(("rejected ", "none"))
    if row.get("flags"):
        parts.append(("kept but noted ", " · ".join(f"{n} {flag}" for flag, n in sorted(row["flags"].items()))))
    if row.get("verify_calls"):
        parts.append(("verified ", f"{row['verify_calls']} teacher calls"))
    if row.get("label_mix"):
        parts.append(("trained on ", mix_text(row["label_mix"])))
    if row.get("label_mix_after"):
        parts.append(("next round trains on ", mix_text(row["label_mix_after"])))
    if row.get("validation_answers"):
        parts.append(("student answered (validation) ", mix_text(row["validation_answers"])))
    if not parts:
        text.append(": nothing recorded yet", style="dim")
    for i, (label, value) in enumerate(parts):
        text.append(" · " if i else ": ")
        text.append(label, style="dim")
        text.append(value)
    return text


def _n(value: Any) -> str:
    return "-" if value is None else str(value)
