"""One sweep, live: per-arm accuracy and cost, paired test deltas, validation per round, rejections, report files."""

from __future__ import annotations

from pathlib import Path

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Static

from l2l_tui.fmt import local_time, status_markup
from l2l_tui.queries import SweepView, open_store, sweep_view
from l2l_tui.screens.watched import WatchedScreen
from l2l_tui.watch import StoreWatcher, SweepChanged, WatchFailed
from l2l_tui.widgets.sweep_plot import SweepPlot
from l2l_tui.widgets.sweep_table import ArmRunsTable, ArmTable, DeltaTable, RejectedTable


class SweepLoaded(Message):
    """The sweep's numbers were read (and its report files written) in a worker thread."""

    def __init__(self, view: SweepView) -> None:
        super().__init__()
        self.view = view


class SweepLoadFailed(Message):
    """Reading the sweep failed."""

    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class SweepScreen(WatchedScreen):
    """Everything `l2l report` shows, kept current while the sweep runs; the keys act on the arm and run under the cursor."""

    BINDINGS = [
        Binding("escape", "back", "back"),
        Binding("o", "open_run", "open run"),
        Binding("x", "examples", "examples of run"),
        Binding("p", "full('#sweep-plot')", "plot full"),
    ]

    def __init__(self, sweep_id: int) -> None:
        super().__init__()
        self.sweep_id = sweep_id
        self.view: SweepView | None = None
        self.arm: str | None = None
        self.watcher: StoreWatcher | None = None
        self.loaded = False
        self._loading = False  # one read at a time; changes meanwhile make one more read after it
        self._stale = False

    @property
    def current_sweep_id(self) -> int:
        """The sweep this screen shows."""
        return self.sweep_id

    @property
    def current_run_id(self) -> int | None:
        """The run under the cursor of the arm's run table."""
        return self.query_one(ArmRunsTable).selected_run_id

    def compose(self) -> ComposeResult:
        """Head, arm table, delta table, plot beside rejections and the arm's runs, report files."""
        yield Header()
        yield Static("reading the sweep…", id="sweep-head")
        yield ArmTable(id="arm-table")
        yield DeltaTable(id="delta-table")
        with Horizontal(id="sweep-bottom"):
            yield SweepPlot(id="sweep-plot")
            with Vertical(id="sweep-side"):
                yield RejectedTable(id="rejected-table")
                yield ArmRunsTable(id="arm-runs")
        yield Static("", id="sweep-files")
        yield Footer()

    def on_mount(self) -> None:
        """Name the panes and start watching the sweep."""
        self.sub_title = f"sweep {self.sweep_id}"
        self.query_one("#arm-table").border_title = "per arm · mean ± sd over seed sets · test at the round validation chose"
        self.query_one("#delta-table").border_title = "paired test difference, points [95% CI, two-level bootstrap] · * zero outside the CI"
        self.query_one("#sweep-plot").border_title = "validation % per round · mean over seed sets"
        self.query_one("#rejected-table").border_title = "teacher examples rejected, by reason"
        self.query_one("#arm-runs").border_title = "runs of the arm · enter opens one"
        self.watcher = self.l2l.start_watcher(self, sweep_id=self.sweep_id)
        self.query_one(ArmTable).focus()

    @property
    def frozen(self) -> bool:
        """Whether wall-clock values and absolute paths are hidden (snapshot tests)."""
        return bool(getattr(self.app, "frozen", False))

    # loading ------------------------------------------------------------------------------------
    @on(SweepChanged)
    def _sweep_changed(self, event: SweepChanged) -> None:
        if not event.exists:
            self.query_one("#sweep-head", Static).update(f"[bold red]sweep {self.sweep_id} is gone from the store[/]")
            self.loaded = True
            return
        if self._loading:
            self._stale = True
        else:
            self._start_load()

    def _start_load(self) -> None:
        self._loading, self._stale = True, False
        self._load(self.view)

    def _load_done(self) -> None:
        self._loading = False
        if self._stale:
            self._start_load()

    @work(thread=True, group="sweep", exit_on_error=False)
    def _load(self, previous: SweepView | None) -> None:
        store = open_store(self.l2l.store_path)
        try:
            view = sweep_view(store, self.sweep_id, previous)
        except Exception as err:  # shown, not raised: the watcher calls again on the next change
            self.post_message(SweepLoadFailed(f"{type(err).__name__}: {err}"))
            return
        finally:
            store.close()
        self.post_message(SweepLoaded(view))

    @on(SweepLoaded)
    def _loaded(self, event: SweepLoaded) -> None:
        view = self.view = event.view
        run_ids = {arm: [r.run_id for r in view.runs_of(arm)] for arm in (row["arm"] for row in view.rows)}
        self.query_one(ArmTable).show(view.rows, run_ids)
        self.query_one(DeltaTable).show(view.rows)
        self.query_one(RejectedTable).show(view.rows)
        self.query_one(SweepPlot).show(view.curves)
        if self.arm is None or self.arm not in run_ids:
            self.arm = self.query_one(ArmTable).selected_key
        self._show_arm()
        self._show_head()
        self._show_files()
        self.loaded = True
        self._load_done()

    @on(SweepLoadFailed)
    def _load_failed(self, event: SweepLoadFailed) -> None:
        self.notify(f"reading sweep {self.sweep_id} failed: {event.error}", severity="error", timeout=10, markup=False)
        self.loaded = True
        self._load_done()

    @on(WatchFailed)
    def _watch_failed(self, event: WatchFailed) -> None:
        self.notify(f"reading the store failed: {event.error}", severity="warning")

    # showing ------------------------------------------------------------------------------------
    def _show_head(self) -> None:
        assert self.view is not None
        sweep = self.view.sweep
        planned = len(self.view.rows) * sweep["seed_sets"]
        done = len(self.view.finished)
        running = sum(1 for r in self.view.runs if r.status in ("running", "stopping"))
        line = (f"[bold]sweep {sweep['id']}[/] {escape(sweep['name'])} · {status_markup(sweep['status'])} · "
                f"{len(self.view.rows)} arms × {sweep['seed_sets']} seed sets · {done}/{planned} runs finished"
                + (f" · {running} running" if running else "") + f" · started {local_time(sweep['created'], self.frozen)}")
        lines = [line]
        if sweep.get("error"):
            lines.append(f"[bold red]error:[/] {escape(sweep['error'])}")
        self.query_one("#sweep-head", Static).update("\n".join(lines))

    def _show_arm(self) -> None:
        table = self.query_one(ArmRunsTable)
        if self.view is None or self.arm is None:
            table.show([], 0)
            return
        table.show(self.view.runs_of(self.arm), self.view.sweep["seed_sets"])
        table.border_title = f"runs of {self.arm} · enter opens one"

    def _show_files(self) -> None:
        assert self.view is not None
        if self.view.files_error:
            text = f"[red]report files not written: {escape(self.view.files_error)}[/]"
        elif self.view.files:
            text = "report: " + " · ".join(f"[bold]{escape(self._path(p))}[/]" if name == "plot" else escape(p.name)
                                           for name, p in self.view.files.items())
        else:
            text = "[dim]report files: writing…[/]"
        self.query_one("#sweep-files", Static).update(text)

    def _path(self, path: Path) -> str:
        """Where a report file is; relative to the store's folder in frozen mode (snapshots must not hold tmp paths)."""
        if not self.frozen:
            return str(path)
        try:
            return str(path.relative_to(Path(self.l2l.store_path).parent))
        except ValueError:
            return path.name

    # interaction --------------------------------------------------------------------------------
    @on(DataTable.RowHighlighted, "#arm-table")
    def _arm_highlighted(self, event: DataTable.RowHighlighted) -> None:
        arm = event.row_key.value
        if arm is not None and arm != self.arm:
            self.arm = arm
            self._show_arm()

    @on(DataTable.RowSelected, "#arm-table")
    def _arm_selected(self, event: DataTable.RowSelected) -> None:
        self.query_one(ArmRunsTable).focus()

    @on(DataTable.RowSelected, "#arm-runs")
    def _run_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open_run()

    def _need_run(self) -> int | None:
        run_id = self.current_run_id
        if run_id is None and self.view is not None and self.arm is not None:
            runs = self.view.runs_of(self.arm)
            run_id = runs[0].run_id if runs else None
        if run_id is None:
            self.notify("no run selected", severity="warning")
        return run_id

    def action_open_run(self) -> None:
        """The dashboard of the run under the cursor (else the arm's first run)."""
        if (run_id := self._need_run()) is not None:
            self.l2l.open_run(run_id)

    def action_examples(self) -> None:
        """The examples of the run under the cursor (else the arm's first run)."""
        if (run_id := self._need_run()) is not None:
            self.l2l.open_examples(run_id)
