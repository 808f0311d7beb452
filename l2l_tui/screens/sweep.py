"""One sweep, live: per-arm accuracy and cost, paired test deltas, validation per round, rejections, report files;
with seed sizes, the tables at one size at a time and the data-efficiency curve with the labels saved."""

from __future__ import annotations

from pathlib import Path

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Static

from engine.reports.sweep_report import BASELINES, matched_note
from l2l_tui.fmt import local_time, status_markup
from l2l_tui.messages import OpenExamples, OpenRun
from l2l_tui.queries import SweepView, open_store, sweep_view
from l2l_tui.screens.watched import WatchedScreen
from l2l_tui.watch import StoreWatcher, SweepChanged, WatchFailed
from l2l_tui.widgets.curve_plot import CurvePlot, SavedLines
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
    """Everything `l2l report` shows, kept current while the sweep runs; the keys act on the arm and run under the cursor.
    A sweep with several seed sizes shows its tables at one size (s: the next) and the data-efficiency curve in place of
    the validation plot (c: one for the other)."""

    BINDINGS = [
        Binding("escape", "back", "back"),
        Binding("o", "open_run", "open run"),
        Binding("x", "examples", "examples of run"),
        Binding("p", "full_plot", "plot full"),
        Binding("s", "next_size", "next seed size"),
        Binding("c", "switch_plot", "curve / rounds"),
    ]

    def __init__(self, sweep_id: int) -> None:
        super().__init__()
        self.sweep_id = sweep_id
        self.view: SweepView | None = None
        self.arm: str | None = None
        self.seed_size = 0  # the seed size the tables show (0: the config's own, in a sweep without seed sizes)
        self.show_curve = True  # in a sweep with seed sizes: the curve (else validation per round) beside the tables
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
            yield CurvePlot(id="sweep-curve")
            with Vertical(id="sweep-side"):
                yield RejectedTable(id="rejected-table")
                yield ArmRunsTable(id="arm-runs")
        yield SavedLines("", id="sweep-saved")
        yield Static("", id="sweep-files")
        yield Footer()

    def on_mount(self) -> None:
        """Name the panes and start watching the sweep."""
        self.sub_title = f"sweep {self.sweep_id}"
        self._titles()
        self.query_one("#sweep-curve").border_title = "test % by seed size (mean over seed sets) · │ size shown"
        self.query_one("#arm-runs").border_title = "runs of the arm · enter opens one"
        self._show_plots()
        self.watcher = self.l2l.watchers.start(self, sweep_id=self.sweep_id)
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
        if self.seed_size not in view.sizes:
            self.seed_size = view.sizes[0]
        self._show_size()
        self.query_one(CurvePlot).show(view.data_curve, self.seed_size if view.sized else None)
        self._show_plots()
        self._show_files()
        self.loaded = True
        self._load_done()
        self.refresh_bindings()

    def _show_size(self) -> None:
        """The tables, the round plot, the head and the labels saved at the seed size `self.seed_size`."""
        assert self.view is not None
        view = self.view
        rows = view.rows_at(self.seed_size)
        run_ids = {row["arm"]: [r.run_id for r in view.runs_of(row["arm"], self.seed_size)] for row in rows}
        self.query_one(ArmTable).show(rows, run_ids)
        self.query_one(DeltaTable).show(rows)
        self.query_one(RejectedTable).show(rows)
        self.query_one(SweepPlot).show(view.round_curves.get(self.seed_size, {}))
        if view.sized:
            self.query_one(SavedLines).show(view.saved, self.seed_size)
        if self.arm is None or self.arm not in run_ids:
            self.arm = self.query_one(ArmTable).selected_key
        self._titles()
        self._show_arm()
        self._show_head()

    @on(SweepLoadFailed)
    def _load_failed(self, event: SweepLoadFailed) -> None:
        self.notify(f"reading sweep {self.sweep_id} failed: {event.error}", severity="error", timeout=10, markup=False)
        self.loaded = True
        self._load_done()

    @on(WatchFailed)
    def _watch_failed(self, event: WatchFailed) -> None:
        self.notify(f"reading the store failed: {event.error}", severity="warning")

    # showing ------------------------------------------------------------------------------------
    def _titles(self) -> None:
        """Border titles; in a sweep with seed sizes they name the size shown."""
        at = f" at n={self.seed_size}" if self.view is not None and self.view.sized else ""
        self.query_one("#arm-table").border_title = f"per arm{at} · mean ± sd over seed sets · test at the round validation chose"
        self.query_one("#delta-table").border_title = (f"paired test difference{at}, points [95% CI, two-level bootstrap]"
                                                       " · * zero outside the CI")
        arms = self.view.sweep.arms if self.view is not None else []
        self.query_one("#delta-table").border_subtitle = " · ".join(
            note for note in (matched_note(arms, base) for base in BASELINES) if note)
        self.query_one("#sweep-plot").border_title = f"validation % per round{at} · mean over seed sets"
        self.query_one("#rejected-table").border_title = f"teacher examples rejected{at}, by reason"

    def _show_plots(self) -> None:
        """The curve or the round plot beside the tables (the curve only where the sweep has seed sizes)."""
        sized = self.view is not None and self.view.sized
        curve = sized and self.show_curve
        self.query_one("#sweep-curve").display = curve
        self.query_one("#sweep-plot").display = not curve
        self.query_one("#sweep-saved").display = sized

    def _show_head(self) -> None:
        assert self.view is not None
        view = self.view
        sweep = view.sweep
        arms = len(view.rows_at(self.seed_size))
        planned = arms * len(view.sizes) * sweep.seed_sets
        done = len(view.finished)
        running = sum(1 for r in view.runs if r.status in ("running", "stopping"))
        shown = " ".join(f"[reverse]{n}[/]" if n == self.seed_size else str(n) for n in view.sizes)
        sizes = f"sizes {shown} × " if view.sized else ""
        line = (f"[bold]sweep {sweep.id}[/] {escape(sweep.name)} · {status_markup(sweep.status)} · "
                f"{arms} arms × {sizes}{sweep.seed_sets} seed sets · {done}/{planned} runs finished"
                + (f" · {running} running" if running else "") + f" · started {local_time(sweep.created, self.frozen)}")
        lines = [line]
        if sweep.judge:
            lines.append(self._strength())
        if sweep.error:
            lines.append(f"[bold red]error:[/] {escape(sweep.error)}")
        head = self.query_one("#sweep-head", Static)
        if len(lines) > 2 or sweep.judge:
            head.styles.max_height = 5  # room for the teacher's line and an error under a head line that wraps
        head.update("\n".join(lines))

    def _strength(self) -> str:
        """The teacher's blind validation accuracy (sweeps.judge) beside the round-0 student's, per seed size."""
        assert self.view is not None
        judge = self.view.sweep.judge or {}
        students = []
        for n, acc in self.view.first_val.items():
            where = f"n={n} " if n else ""
            students.append(f"[bold]{where}{100 * acc:.1f}%[/]" if n == self.seed_size and self.view.sized
                            else f"{where}{100 * acc:.1f}%")
        agreement = judge.get("agreement")
        teacher = "-" if agreement is None else f"{100 * agreement:.1f}%"
        notes = [f"{judge['right']}/{judge['rows']}"] if judge.get("right") is not None and judge.get("rows") else []
        if judge.get("majority_share") is not None:
            notes.append(f"always {escape(repr(judge['majority']))}: {100 * judge['majority_share']:.1f}%")
        majority = f" ({'; '.join(notes)})" if notes else ""
        return f"teacher, blind on validation: [bold]{teacher}[/]{majority} · round-0 student: {', '.join(students) or '-'}"

    def _show_arm(self) -> None:
        table = self.query_one(ArmRunsTable)
        if self.view is None or self.arm is None:
            table.show([], 0)
            return
        table.show(self.view.runs_of(self.arm, self.seed_size), self.view.sweep.seed_sets)
        at = f" at n={self.seed_size}" if self.view.sized else ""
        table.border_title = f"runs of {self.arm}{at} · enter opens one"

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
            runs = self.view.runs_of(self.arm, self.seed_size)
            run_id = runs[0].run_id if runs else None
        if run_id is None:
            self.notify("no run selected", severity="warning")
        return run_id

    def action_open_run(self) -> None:
        """The dashboard of the run under the cursor (else the arm's first run)."""
        if (run_id := self._need_run()) is not None:
            self.post_message(OpenRun(run_id))

    def action_examples(self) -> None:
        """The examples of the run under the cursor (else the arm's first run)."""
        if (run_id := self._need_run()) is not None:
            self.post_message(OpenExamples(run_id))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The seed-size keys only where the sweep has several sizes (hidden from the footer otherwise)."""
        if action in ("next_size", "switch_plot"):
            return self.view is not None and self.view.sized
        return True

    def action_next_size(self) -> None:
        """Show the tables, runs and round plot at the next seed size (after the largest, the smallest again)."""
        if self.view is None or not self.view.sized:
            return
        sizes = self.view.sizes
        self.seed_size = sizes[(sizes.index(self.seed_size) + 1) % len(sizes)] if self.seed_size in sizes else sizes[0]
        self._show_size()
        self.query_one(CurvePlot).show(self.view.data_curve, self.seed_size)

    def action_switch_plot(self) -> None:
        """The data-efficiency curve for the validation-per-round plot, and back."""
        self.show_curve = not self.show_curve
        self._show_plots()

    def action_full_plot(self) -> None:
        """The plot shown beside the tables, full screen (the key again, or escape, returns)."""
        curve = self.view is not None and self.view.sized and self.show_curve
        self.action_full("#sweep-curve" if curve else "#sweep-plot")
