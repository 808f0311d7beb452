"""`l2l doctor`: what this installation can do (libraries, device, models, store, a configured teacher endpoint)."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from engine.config.schema import RunConfig
from engine.run.runs import library_versions


def report(cfg: RunConfig | None = None) -> Table:
    """A table of checks with their findings; with a config, its teacher endpoint is checked too."""
    from models.catalog import list_models, status
    from models.device import device_info, gpu_present, llama_gpu_offload, offload_warning, plan_training
    from models.paths import default_store, model_cache

    table = Table("check", "finding", title="l2l doctor")
    for name, version in library_versions().items():
        table.add_row(name, version)
    for key, value in device_info().items():
        table.add_row(f"device: {key}", str(value))
    plan = plan_training("auto")
    table.add_row("student training", f"{plan.mode} on {plan.device} — {plan.reason}")
    try:
        offload = llama_gpu_offload()
        table.add_row("llama.cpp GPU offload", str(offload))
        warning = offload_warning(gpu_present(), offload)
        if warning:
            table.add_row("[bold red]WARNING[/]", f"[bold red]{escape(warning)}[/]")
    except Exception as err:  # broken native build
        table.add_row("llama.cpp", f"not importable: {err}")
    table.add_row("teacher process", teacher_process(cfg))
    table.add_row("model cache", str(model_cache()))
    for entry in list_models():
        table.add_row(f"model {entry.name}", status(entry.name))
    table.add_row("store", str(default_store()))
    if cfg is not None:
        for check, finding in endpoint_rows(cfg):
            table.add_row(check, finding)
    return table


def teacher_process(cfg: RunConfig | None) -> str:
    """Where the llama.cpp teacher will run, and why."""
    from models.params import TeacherParams
    from models.teacher import runs_in_own_process

    params = cfg.teacher.params() if cfg is not None else TeacherParams()
    if params.backend != "llama_cpp":
        return f"a server ({params.backend})"
    where = "its own process" if runs_in_own_process(params) else "the worker's process"
    why = f"teacher.isolate = {params.isolate}" if params.isolate != "auto" else (
        "auto: a CUDA GPU is present" if where == "its own process" else "auto: no CUDA GPU")
    return f"{where} ({why})"


def endpoint_rows(cfg: RunConfig) -> list[tuple[str, str]]:
    """(check, finding) rows for the config's teacher: the endpoint answers and serves the model it names."""
    from models.teacher.openai_http import ServerError, server_models

    teacher = cfg.teacher
    if teacher.backend != "openai":
        return [("teacher", f"{escape(teacher.model)} in-process (llama_cpp): no endpoint to check")]
    if not teacher.base_url:
        return [("[bold red]teacher endpoint[/]", "[bold red]teacher.base_url is not set (backend = 'openai')[/]")]
    url = escape(teacher.base_url)
    try:
        served = server_models(teacher.base_url, timeout=10)
    except ServerError as err:
        return [("[bold red]teacher endpoint[/]", f"[bold red]{url} does not answer GET /models: {escape(str(err))}[/]")]
    rows = [("teacher endpoint", f"{url} serves {escape(', '.join(served) or '(no model listed)')}")]
    if teacher.model not in served:
        rows.append(("[bold yellow]teacher model[/]", f"[bold yellow]{escape(teacher.model)} is not among the served models; "
                     "vLLM refuses unknown names, llama.cpp servers answer with their one model[/]"))
    return rows
