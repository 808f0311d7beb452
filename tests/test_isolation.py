"""A GGUF's chat template is untrusted code: llama-cpp-python renders it in Jinja's ImmutableSandboxedEnvironment, so
a template reaching for Python internals fails that request (a counted 'prompt' failure), leaks nothing and never
breaks the batch."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.random_gguf import write_random_llama_gguf
from models.teacher.base import TeacherRequest, failure_reason

HOSTILE = {
    "mro": "{{ ''.__class__.__mro__ }}",
    "subclasses": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "globals": "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "loop": "{% for c in [].__class__.__base__.__subclasses__() %}{{ c.__name__ }}{% endfor %}",
    "self": "{{ self.__init__.__globals__.__builtins__ }}",
}
SCHEMA = {"type": "object", "properties": {"label": {"type": "string", "enum": ["negative", "positive"]}},
          "required": ["label"], "additionalProperties": False}


@pytest.mark.parametrize("name", sorted(HOSTILE))
@pytest.mark.parametrize("parallel", [1, 2])
def test_a_hostile_chat_template_fails_safely(name: str, parallel: int, tmp_path: Path) -> None:
    from models.teacher.llama_cpp import LlamaCppTeacher

    gguf = write_random_llama_gguf(tmp_path / f"{name}.gguf", chat_template=HOSTILE[name])
    teacher = LlamaCppTeacher(gguf, n_ctx=1024, parallel=parallel, n_threads=1, retries=0)
    try:
        requests = [TeacherRequest(key=str(i), messages=[{"role": "user", "content": "Label: great film"}],
                                   schema=SCHEMA, max_tokens=16, temperature=0.0, top_p=1.0, seed=i) for i in range(2)]
        replies = teacher.generate(requests)
    finally:
        teacher.close()
    assert [r.key for r in replies] == ["0", "1"], "every request still gets its reply"
    for reply in replies:
        assert reply.parsed is None and reply.error is not None
        assert "unsafe" in reply.error or "SecurityError" in reply.error or "undefined" in reply.error, reply.error
        assert failure_reason(reply.error) in ("prompt", "backend_error")
        for leak in ("<class", "uid=", "subprocess", "builtins"):
            assert leak not in reply.text and leak not in reply.error.split(":", 1)[-1].replace("__builtins__", "")


def test_the_environment_is_the_immutable_sandbox() -> None:
    from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    formatter = Jinja2ChatFormatter(template=HOSTILE["subclasses"], eos_token="", bos_token="")
    assert isinstance(formatter._environment.environment, ImmutableSandboxedEnvironment)
    with pytest.raises(SecurityError):
        formatter(messages=[{"role": "user", "content": "x"}])
