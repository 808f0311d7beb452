"""One tab-separated summary line per measured claim; bench/run.py gathers them into its final table."""

from __future__ import annotations

PREFIX = "SUMMARY\t"


def report(claim: str, baseline: str, candidate: str, ratio: float | None, bar: str) -> None:
    """Print a claim's baseline, candidate, ratio and the bar it is held to."""
    shown = f"{ratio:.2f}" if ratio is not None else "-"
    print(PREFIX + "\t".join([claim, baseline, candidate, shown, bar]), flush=True)


def parse(line: str) -> list[str] | None:
    """The fields of a summary line, or None for any other output line."""
    return line.rstrip("\n")[len(PREFIX):].split("\t") if line.startswith(PREFIX) else None
