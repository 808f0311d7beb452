"""Teacher backends: llama.cpp on a GGUF (in this process or its own), or an OpenAI-compatible server."""

from __future__ import annotations

from pathlib import Path

from models.errors import ConfigError, ModelNotFoundError
from models.params import TeacherParams
from models.teacher.base import Teacher, TeacherReply, TeacherRequest

__all__ = ["Teacher", "TeacherReply", "TeacherRequest", "open_teacher", "runs_in_own_process"]


def open_teacher(cfg: TeacherParams, model_path: Path | None, seed: int) -> Teacher:
    """The teacher the config names: llama_cpp needs the GGUF path, openai needs `base_url`."""
    if cfg.backend == "openai":
        from models.teacher.openai_http import OpenAITeacher

        if not cfg.base_url:
            raise ConfigError("teacher.base_url: required when teacher.backend = 'openai' (e.g. http://127.0.0.1:8080/v1)")
        return OpenAITeacher(cfg.base_url, cfg.model, parallel=cfg.parallel, retries=cfg.retries, timeout=cfg.timeout,
                             response_format=cfg.response_format)
    from models.teacher.llama_cpp import LlamaCppTeacher
    from models.teacher.own_process import ProcessTeacher

    if model_path is None or not Path(model_path).is_file():
        raise ModelNotFoundError(f"teacher.model: GGUF file not found: {model_path or cfg.model}")
    teacher = ProcessTeacher if runs_in_own_process(cfg) else LlamaCppTeacher
    return teacher(Path(model_path), n_ctx=cfg.n_ctx, parallel=cfg.parallel, n_gpu_layers=cfg.n_gpu_layers,
                   n_threads=cfg.n_threads, retries=cfg.retries, seed=cfg.seed if cfg.seed is not None else seed)


def runs_in_own_process(cfg: TeacherParams) -> bool:
    """Whether the llama.cpp teacher runs in its own process (auto: on a machine with a CUDA GPU)."""
    if cfg.isolate != "auto":
        return cfg.isolate == "always"
    from models.device import gpu_present

    # Not only when layers are offloaded: on the H200 a load with n_gpu_layers=0 crashed the same way.
    return gpu_present()
