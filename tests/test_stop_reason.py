"""When the loop ends: the round cap, no misses (said plainly at round 0, where a student that fits its seeds leaves the
loop nothing to write from), and validation patience."""

from __future__ import annotations

from engine.config.schema import RunConfig, resolve
from engine.run.loop import stop_reason


def _cfg(**loop: object) -> RunConfig:
    """A real resolved config of the demo's task with these loop settings."""
    return resolve({"task": {"preset": "rotten_tomatoes"}, "loop": loop})


def test_the_round_cap_ends_the_loop() -> None:
    assert stop_reason(_cfg(rounds=3), 2, 5, [0.7, 0.8, 0.9]) == "reached loop.rounds = 3"
    assert stop_reason(_cfg(rounds=3), 1, 5, [0.7, 0.8]) is None


def test_no_misses_at_round_0_says_why_and_what_to_do() -> None:
    reason = stop_reason(_cfg(rounds=3), 0, 0, [0.8])
    assert reason is not None and "nothing to write from" in reason and 'loop.targets = "all"' in reason
    assert stop_reason(_cfg(rounds=3), 1, 0, [0.8, 0.82]) == "no misses left"
    assert stop_reason(_cfg(rounds=3, targets="all"), 0, 0, [0.8]) is None, "writing for every seed needs no misses"


def test_patience_counts_rounds_without_a_gain() -> None:
    cfg = _cfg(rounds=6, patience=2)
    assert stop_reason(cfg, 3, 4, [0.80, 0.79, 0.78, 0.80]) == "validation accuracy has not improved for 2 rounds"
    assert stop_reason(cfg, 3, 4, [0.80, 0.79, 0.78, 0.81]) is None
    assert stop_reason(cfg, 2, 4, [0.80, 0.79, 0.80]) is None, "a best round before the last two is needed"
    assert stop_reason(cfg, 3, 4, []) is None, "no validation split: patience cannot judge"
