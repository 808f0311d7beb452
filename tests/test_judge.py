"""`l2l judge`: the teacher's blind verification asked on real rows whose labels are known, counted, nothing written."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

from conftest import tiny_config_doc

from engine.judge import JudgeReport


def test_a_judge_no_better_than_the_majority_label_is_warned_about() -> None:
    # The counts of `l2l judge bench/configs/sweep-math-topic-qwen05.toml` (MATH topic, 100 validation rows).
    rows = Counter({"Algebra": 32, "Intermediate Algebra": 22, "Prealgebra": 13, "Precalculus": 10,
                    "Counting & Probability": 10, "Number Theory": 8, "Geometry": 5})
    math = JudgeReport(split="validation", verdicts=Counter(agrees=25, label_disagrees=75),
                       wrong_by_answer=Counter({"Algebra": 21, "Intermediate Algebra": 19, "Prealgebra": 13,
                                                "Precalculus": 10, "Counting & Probability": 7, "Number Theory": 5}),
                       rows_by_answer=rows, seconds=319.0)
    assert math.rows == 100 and math.agreement == 0.25 and math.majority == ("Algebra", 0.32)
    lines = math.lines()
    assert lines[1] == "the teacher agrees with the true answer on 25 (25.0%); always answering 'Algebra' would score 32.0%"
    assert "Algebra 11/32" in lines[3] and "Geometry 5/5" in lines[3] and "Prealgebra 0/13" in lines[3]
    assert lines[-1].startswith("warning: the teacher gives 25% of these rows their true answer, no better than always")
    sentiment = JudgeReport(split="validation", verdicts=Counter(agrees=82, label_disagrees=18),
                            wrong_by_answer=Counter(positive=15, negative=3),
                            rows_by_answer=Counter(positive=50, negative=50), seconds=169.0)
    assert sentiment.agreement == 0.82 and sentiment.warning() is None and len(sentiment.lines()) == 4


def test_judge_asks_the_real_teacher_about_every_row_and_writes_nothing(tiny_gguf: Path, tmp_path: Path) -> None:
    from engine.config import resolve

    store = tmp_path / "store" / "l2l.db"
    config = tmp_path / "tiny.toml"
    config.write_text(resolve(tiny_config_doc(tiny_gguf, store)).to_toml(), encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "l2l_tui.cli", "judge", str(config), "--limit", "4"],
                          capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[1],
                          env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "HOME": str(Path.home()),
                               "L2L_HOME": str(tmp_path / "home")})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("4 real validation rows judged blind in ")
    verdicts = dict((k, int(v)) for k, v in re.findall(r"(\w+) (\d+)", proc.stdout.splitlines()[2].split(": ", 1)[1]))
    assert sum(verdicts.values()) == 4 and set(verdicts) <= {"agrees", "label_disagrees", "not_a_task", "verify_failed"}
    agrees = int(re.search(r"true answer on (\d+) ", proc.stdout).group(1))  # type: ignore[union-attr]
    assert agrees == verdicts.get("agrees", 0)
    assert not store.parent.exists(), "judging writes no store"


def test_judge_refuses_a_bad_split_in_one_line(tiny_gguf: Path, tmp_path: Path) -> None:
    from engine.config import resolve

    config = tmp_path / "tiny.toml"
    config.write_text(resolve(tiny_config_doc(tiny_gguf, tmp_path / "l2l.db")).to_toml(), encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "l2l_tui.cli", "judge", str(config), "--split", "train"],
                          capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[1],
                          env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())})
    assert proc.returncode == 2 and "--split: 'train' is not one of seed, validation, test" in proc.stderr
