"""The new-run form: fields from the config schema, file pickers, live validation, dry-run preview, save as TOML, launch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Button, Footer, Header, Static

from engine.config.schema import RunConfig
from l2l_tui.messages import RunLaunched
from l2l_tui.screens.base import AppScreen
from l2l_tui.screens.file_picker import PathPicker
from l2l_tui.widgets.config_form import ConfigForm


class PreviewReady(Message):
    """The dry run finished."""

    def __init__(self, sections: dict[str, Any]) -> None:
        super().__init__()
        self.sections = sections


class ActionFailed(Message):
    """Preview, save or launch failed with a message for the user."""

    def __init__(self, what: str, error: str) -> None:
        super().__init__()
        self.what, self.error = what, error


class ConfigLoaded(Message):
    """A TOML file was read into a config."""

    def __init__(self, doc: dict[str, Any], path: Path) -> None:
        super().__init__()
        self.doc, self.path = doc, path


class NewRunScreen(AppScreen):
    """Fill the form, look at the dry run, then launch (or save the TOML for `l2l run`)."""

    BINDINGS = [
        Binding("escape", "cancel", "cancel"),
        Binding("f2", "preview", "dry run"),
        Binding("f3", "save", "save TOML"),
        Binding("f4", "load", "load TOML"),
        Binding("f5", "launch", "launch"),
    ]

    def __init__(self, initial: dict[str, Any] | None = None, title: str = "new run") -> None:
        super().__init__()
        self.initial = initial
        self.title_text = title
        self.busy: str | None = None
        self.last_preview: dict[str, Any] | None = None

    def compose(self) -> ComposeResult:
        """Status line, form, buttons."""
        yield Header()
        yield Static("", id="form-status")
        yield ConfigForm(self.initial, id="config-form")
        with Horizontal(id="form-buttons"):
            yield Button("Dry run (F2)", id="btn-preview")
            yield Button("Save TOML (F3)", id="btn-save")
            yield Button("Load TOML (F4)", id="btn-load")
            yield Button("Launch (F5)", variant="success", id="btn-launch")
            yield Button("Cancel (esc)", id="btn-cancel")
        yield Footer()

    def on_mount(self) -> None:
        """Title."""
        self.sub_title = self.title_text

    @property
    def form(self) -> ConfigForm:
        """The form."""
        return self.query_one(ConfigForm)

    # form state ---------------------------------------------------------------------------------
    @on(ConfigForm.Checked)
    def _checked(self, event: ConfigForm.Checked) -> None:
        status = self.query_one("#form-status", Static)
        if self.busy:
            return
        if event.cfg is not None:
            status.update("[green]✓ valid[/] — F2 dry run · F3 save as TOML · F5 launch")
        else:
            first = next(iter(event.errors.items()))
            where = first[0] or "config"
            status.update(f"[red]✗ {len(event.errors)} problem{'s' if len(event.errors) > 1 else ''}[/] — {escape(where)}: {escape(first[1])}")
        for button in ("#btn-preview", "#btn-save", "#btn-launch"):
            self.query_one(button, Button).disabled = event.cfg is None

    def _set_busy(self, what: str | None) -> None:
        self.busy = what
        if what:
            self.query_one("#form-status", Static).update(f"[yellow]{what}…[/]")
        else:
            self.form.check()

    @on(ConfigForm.PickRequested)
    def _pick(self, event: ConfigForm.PickRequested) -> None:
        spec = event.spec
        start = Path(event.current).expanduser() if event.current and Path(event.current).expanduser().exists() else None

        def picked(path: Path | None) -> None:
            if path is not None:
                self.form.set_text(spec.key, str(path))

        self.app.push_screen(PathPicker(f"choose {spec.key}", "file", start), picked)

    @on(Button.Pressed)
    def _button(self, event: Button.Pressed) -> None:
        actions = {"btn-preview": self.action_preview, "btn-save": self.action_save, "btn-load": self.action_load,
                   "btn-launch": self.action_launch, "btn-cancel": self.action_cancel}
        if event.button.id in actions:
            actions[event.button.id]()

    def _valid(self) -> RunConfig | None:
        if self.busy:
            self.notify(f"still {self.busy}", severity="warning")
            return None
        cfg = self.form.check()
        if cfg is None:
            self.notify("fix the fields marked in red first", severity="error")
        return cfg

    # actions ------------------------------------------------------------------------------------
    def action_cancel(self) -> None:
        """Leave the form."""
        self.app.pop_screen()

    def action_preview(self) -> None:
        """Run the engine's dry run (loads the data: in a worker thread) and show it."""
        if (cfg := self._valid()) is not None:
            self._set_busy("preparing the dry run (loading data and tokenizer)")
            self._preview(cfg)

    @work(thread=True, exclusive=True, group="form", exit_on_error=False)
    def _preview(self, cfg: RunConfig) -> None:
        from engine.tools.dry_run import dry_run_sections

        try:
            sections = dry_run_sections(cfg)
        except Exception as err:
            self.post_message(ActionFailed("dry run", _message(err)))
            return
        self.post_message(PreviewReady(sections))

    @on(PreviewReady)
    def _preview_ready(self, event: PreviewReady) -> None:
        from l2l_tui.screens.dry_run import DryRunScreen

        self._set_busy(None)
        self.last_preview = event.sections
        self.app.push_screen(DryRunScreen(event.sections))

    def action_save(self) -> None:
        """Write the resolved config as TOML (for `l2l run FILE`)."""
        if (cfg := self._valid()) is None:
            return

        def chosen(path: Path | None) -> None:
            if path is not None:
                self._save(cfg, path)

        self.app.push_screen(PathPicker("save the config as TOML", "save", Path.cwd() / f"{cfg.name}.toml"), chosen)

    @work(thread=True, exclusive=True, group="form", exit_on_error=False)
    def _save(self, cfg: RunConfig, path: Path) -> None:
        try:
            path.write_text(cfg.to_toml(), encoding="utf-8")
        except OSError as err:
            self.post_message(ActionFailed("save", str(err)))
            return
        self.app.call_from_thread(self.notify, f"saved {path} — repeat with: l2l run {path}")

    def action_load(self) -> None:
        """Fill the form from a TOML config file."""

        def chosen(path: Path | None) -> None:
            if path is not None:
                self._load(path)

        self.app.push_screen(PathPicker("load a TOML config", "file", Path.cwd()), chosen)

    @work(thread=True, exclusive=True, group="form", exit_on_error=False)
    def _load(self, path: Path) -> None:
        from engine.config.schema import load_config

        try:
            cfg = load_config(path)
        except Exception as err:
            self.post_message(ActionFailed("load", _message(err)))
            return
        self.post_message(ConfigLoaded(cfg.model_dump(mode="json"), path))

    @on(ConfigLoaded)
    async def _loaded(self, event: ConfigLoaded) -> None:
        await self.form.remove()
        await self.mount(ConfigForm(event.doc, base_dir=event.path.parent, id="config-form"), after="#form-status")
        self.notify(f"loaded {event.path}")

    def action_launch(self) -> None:
        """Validate data and models, create the run, start its worker, open its dashboard."""
        if (cfg := self._valid()) is not None:
            store_path = self.l2l.store_path
            if cfg.store is not None and Path(cfg.store).resolve() != store_path:
                self.notify(f"store = {cfg.store} is ignored here: the app launches into {store_path}",
                            severity="warning", markup=False)
            self._set_busy("checking data and models, creating the run")
            self._launch(cfg)

    @work(thread=True, exclusive=True, group="form", exit_on_error=False)
    def _launch(self, cfg: RunConfig) -> None:
        from engine.run.runs import create_run, prepare
        from engine.run.worker import spawn_worker
        from l2l_tui.queries import open_store

        store_path = self.l2l.store_path
        try:
            prepared = prepare(cfg)
            store = open_store(store_path)
            try:
                run_id = create_run(store, prepared)
            finally:
                store.close()
            pid = spawn_worker(store_path, run_id)
        except Exception as err:
            self.post_message(ActionFailed("launch", _message(err)))
            return
        self.post_message(RunLaunched(run_id, pid))

    @on(RunLaunched)
    def _launched(self, event: RunLaunched) -> None:
        """Leave the form; the message then bubbles on to the app, which notes the worker and opens the run."""
        self.busy = None
        self.notify(f"run {event.run_id} created; worker pid {event.pid}")
        self.app.pop_screen()

    @on(ActionFailed)
    def _failed(self, event: ActionFailed) -> None:
        self._set_busy(None)
        self.query_one("#form-status", Static).update(f"[red]✗ {event.what} failed:[/] {escape(event.error)}")
        self.notify(f"{event.what} failed: {event.error}", severity="error", timeout=10)


def _message(err: Exception) -> str:
    from models.errors import L2LError

    return str(err) if isinstance(err, L2LError) else f"{type(err).__name__}: {err}"
