"""`python -m l2l_tui [--store PATH]`: open the app."""

from __future__ import annotations

import argparse
from pathlib import Path

from l2l_tui.app import run_app


def main() -> None:
    """Parse --store and open the app."""
    parser = argparse.ArgumentParser(prog="python -m l2l_tui", description="llm2llm terminal app")
    parser.add_argument("--store", type=Path, default=None, help="SQLite store (default: the user data folder's l2l.db)")
    run_app(parser.parse_args().store)


if __name__ == "__main__":
    main()
