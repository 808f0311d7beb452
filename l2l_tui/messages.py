"""The commands screens ask the app to perform: posted as messages, they bubble to the app's `@on` handlers.

A leaf module: it imports no screen and not the app, so any screen or widget can post these without an import cycle."""

from __future__ import annotations

from textual.message import Message


class RunCommand(Message):
    """A command about one run."""

    def __init__(self, run_id: int) -> None:
        super().__init__()
        self.run_id = run_id


class OpenRun(RunCommand):
    """Show a run's dashboard."""


class OpenExamples(RunCommand):
    """Show a run's example browser."""


class StartRun(RunCommand):
    """Start or resume a run in a detached worker process."""


class StopRun(RunCommand):
    """Ask a run's worker to finish the phase in flight and exit."""


class ExportRun(RunCommand):
    """Ask for a folder (and whether to build model files), then export a run."""


class DeleteRun(RunCommand):
    """Ask, then delete a run that is not running."""


class RunLaunched(RunCommand):
    """The new-run form created a run and started its worker: the app remembers the worker and opens the run."""

    def __init__(self, run_id: int, pid: int) -> None:
        super().__init__(run_id)
        self.pid = pid


class NewRun(Message):
    """Open the new-run form, prefilled from a run's config when `from_run` is given."""

    def __init__(self, from_run: int | None = None) -> None:
        super().__init__()
        self.from_run = from_run


class OpenSweeps(Message):
    """Show the store's sweeps."""


class OpenSweep(Message):
    """Show one sweep."""

    def __init__(self, sweep_id: int) -> None:
        super().__init__()
        self.sweep_id = sweep_id
