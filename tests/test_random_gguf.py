"""The random GGUF loads in llama.cpp and in transformers, and both tokenize text the same way."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.random_gguf import write_random_llama_gguf

SAMPLE = 'Hello world, the cat sat on the mat and ran.\n  {"a": 12, "b": "x"}\tünïcödé 😀'


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh tiny random GGUF (this module tests the writer itself, not the shared fixture)."""
    return write_random_llama_gguf(tmp_path_factory.mktemp("rg") / "tiny.gguf", seed=3)


def test_llama_cpp_loads_tokenizes_and_chats(gguf_file: Path) -> None:
    llama_cpp = pytest.importorskip("llama_cpp")
    llm = llama_cpp.Llama(str(gguf_file), n_ctx=256, n_threads=2, verbose=False, seed=0)
    ids = llm.tokenize(SAMPLE.encode(), add_bos=False, special=True)
    assert llm.detokenize(ids).decode() == SAMPLE
    assert llm.token_eos() == llm.tokenize(b"<|im_end|>", add_bos=False, special=True)[0]
    out = llm.create_chat_completion([{"role": "user", "content": "hi"}], max_tokens=12, temperature=0.0)
    assert out["usage"]["prompt_tokens"] > 5
    assert 1 <= out["usage"]["completion_tokens"] <= 12
    llm.close()


def test_transformers_loads_with_matching_token_ids(gguf_file: Path) -> None:
    llama_cpp = pytest.importorskip("llama_cpp")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    model = AutoModelForCausalLM.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    assert model.config.hidden_size == 64 and model.config.num_hidden_layers == 2
    assert (tok.eos_token, tok.bos_token, tok.pad_token) == ("<|im_end|>", "<|endoftext|>", "<|pad|>")
    llm = llama_cpp.Llama(str(gguf_file), n_ctx=256, verbose=False)
    chat = tok.apply_chat_template([{"role": "user", "content": SAMPLE}], tokenize=False, add_generation_prompt=True)
    for text in (SAMPLE, chat):
        assert tok(text)["input_ids"] == llm.tokenize(text.encode(), add_bos=False, special=True)
    assert tok.decode(tok(SAMPLE)["input_ids"]) == SAMPLE
    llm.close()


def test_same_seed_same_bytes_and_real_shape_options(tmp_path: Path) -> None:
    a = write_random_llama_gguf(tmp_path / "a.gguf", seed=1)
    b = write_random_llama_gguf(tmp_path / "b.gguf", seed=1)
    assert a.read_bytes() == b.read_bytes()
    llama_cpp = pytest.importorskip("llama_cpp")
    big = write_random_llama_gguf(tmp_path / "q8.gguf", hidden=128, heads=4, kv_heads=1, ff=256, vocab_size=4096, dtype="q8_0")
    llm = llama_cpp.Llama(str(big), n_ctx=128, verbose=False)
    assert llm.n_vocab() == 4096 and llm.metadata["general.file_type"] == "7"
    llm.close()


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="dtype"):
        write_random_llama_gguf(tmp_path / "x.gguf", dtype="q3_k")
    with pytest.raises(ValueError, match="vocab_size"):
        write_random_llama_gguf(tmp_path / "x.gguf", vocab_size=100)
    assert not (tmp_path / "x.gguf").exists()
