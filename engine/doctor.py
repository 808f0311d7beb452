"""`l2l doctor`: what this installation can do (libraries, device, models, store), as one table."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from engine.runs import library_versions


def report() -> Table:
    """A table of checks with their findings."""
    from models.catalog import list_models, status
    from models.device import device_info, gpu_present, offload_warning, plan_training
    from models.paths import default_store, model_cache

    table = Table("check", "finding", title="l2l doctor")
    for name, version in library_versions().items():
        table.add_row(name, version)
    for key, value in device_info().items():
        table.add_row(f"device: {key}", str(value))
    plan = plan_training("auto")
    table.add_row("student training", f"{plan.mode} on {plan.device} — {plan.reason}")
    try:
        import llama_cpp

        offload = bool(llama_cpp.llama_supports_gpu_offload())
        table.add_row("llama.cpp GPU offload", str(offload))
        warning = offload_warning(gpu_present(), offload)
        if warning:
            table.add_row("[bold red]WARNING[/]", f"[bold red]{escape(warning)}[/]")
    except Exception as err:  # broken native build
        table.add_row("llama.cpp", f"not importable: {err}")
    table.add_row("model cache", str(model_cache()))
    for entry in list_models():
        table.add_row(f"model {entry.name}", status(entry.name))
    table.add_row("store", str(default_store()))
    return table
