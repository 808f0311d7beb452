"""`l2l judge`: the teacher's blind verification asked on real rows whose labels are known, counted, nothing written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import tiny_config_doc

from engine.experiments.judge import JudgeReport, paired


def _report(right: dict[str, tuple[int, int]], seconds: float = 1.0) -> JudgeReport:
    """A report whose rows of each true answer are (right, total), the right ones first."""
    answers = tuple(a for a, (_, n) in right.items() for _ in range(n))
    verdicts = tuple("agrees" if i < k else "label_disagrees" for _, (k, n) in right.items() for i in range(n))
    return JudgeReport(split="validation", answers=answers, verdicts=verdicts, seconds=seconds)


def test_a_judge_no_better_than_the_majority_label_is_warned_about() -> None:
    # The counts of `l2l judge bench/configs/sweep-math-topic-qwen05.toml` (MATH topic, 100 validation rows).
    math = _report({"Algebra": (11, 32), "Intermediate Algebra": (3, 22), "Prealgebra": (0, 13), "Precalculus": (0, 10),
                    "Counting & Probability": (3, 10), "Number Theory": (3, 8), "Geometry": (5, 5)}, 277.0)
    assert math.rows == 100 and math.agreement == 0.25 and math.majority == ("Algebra", 0.32)
    lines = math.lines()
    assert lines[1] == "the teacher agrees with the true answer on 25 (25.0%); always answering 'Algebra' would score 32.0%"
    assert lines[2] == "verdicts: label_disagrees 75, agrees 25"
    assert "Algebra 11/32" in lines[3] and "Geometry 5/5" in lines[3] and "Prealgebra 0/13" in lines[3]
    assert lines[-1].startswith("warning: the teacher gives 25% of these rows their true answer, no better than always")
    sentiment = _report({"negative": (47, 50), "positive": (35, 50)})
    assert sentiment.agreement == 0.82 and sentiment.warning() is None and len(sentiment.lines()) == 4


def test_two_judges_are_paired_on_the_same_rows_with_an_exact_mcnemar_p() -> None:
    base = JudgeReport(split="validation", answers=("a",) * 10, verdicts=("agrees",) * 4 + ("label_disagrees",) * 6,
                       seconds=1.0)
    # rows 0-3 right in both; the other judge also gets rows 4-8 right and loses row 3
    other = JudgeReport(split="validation", answers=("a",) * 10,
                        verdicts=("agrees",) * 3 + ("label_disagrees",) + ("agrees",) * 5 + ("label_disagrees",),
                        seconds=1.0)
    # 6 discordant rows, 5 one way: p = 2 * (C(6,0) + C(6,1)) / 2**6 = 14/64
    assert paired(base, other) == ("paired on the same 10 rows: +40.0 points; right only with the comparison 5, "
                                   "only without it 1; exact McNemar p = 0.219")
    assert paired(base, base).endswith("right only with the comparison 0, only without it 0; exact McNemar p = 1.000")
    with pytest.raises(ValueError):
        paired(base, JudgeReport(split="validation", answers=("b",) * 10, verdicts=base.verdicts, seconds=1.0))


def test_judge_asks_the_real_teacher_about_every_row_and_writes_nothing(tiny_gguf: Path, tmp_path: Path) -> None:
    from engine.config.schema import resolve

    store = tmp_path / "store" / "l2l.db"
    config = tmp_path / "tiny.toml"
    config.write_text(resolve(tiny_config_doc(tiny_gguf, store)).to_toml(), encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "l2l_tui.cli", "judge", str(config), "--limit", "4",
                           "--compare", "checks.verify_shots=1"],
                          capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[1],
                          env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "HOME": str(Path.home()),
                               "L2L_HOME": str(tmp_path / "home")})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("4 real validation rows judged blind in ")
    verdicts = dict((k, int(v)) for k, v in re.findall(r"(\w+) (\d+)", proc.stdout.splitlines()[2].split(": ", 1)[1]))
    assert sum(verdicts.values()) == 4 and set(verdicts) <= {"agrees", "label_disagrees", "not_a_task", "verify_failed"}
    agrees = int(re.search(r"true answer on (\d+) ", proc.stdout).group(1))  # type: ignore[union-attr]
    assert agrees == verdicts.get("agrees", 0)
    assert "with checks.verify_shots=1:" in proc.stdout, "the comparison is judged too"
    assert re.search(r"paired on the same 4 rows: [+-]\d+\.\d points; .* exact McNemar p = \d\.\d{3}$", proc.stdout.strip())
    assert not store.parent.exists(), "judging writes no store"


def test_judge_refuses_a_bad_split_in_one_line(tiny_gguf: Path, tmp_path: Path) -> None:
    from engine.config.schema import resolve

    config = tmp_path / "tiny.toml"
    config.write_text(resolve(tiny_config_doc(tiny_gguf, tmp_path / "l2l.db")).to_toml(), encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "l2l_tui.cli", "judge", str(config), "--split", "train"],
                          capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[1],
                          env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())})
    assert proc.returncode == 2 and "--split: 'train' is not one of seed, validation, test" in proc.stderr
