"""Random-weight llama GGUF files (byte-level BPE vocabulary, ChatML template) for tests and benchmarks."""

from __future__ import annotations

from pathlib import Path

import numpy as np

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Control tokens after the byte and merge tokens: BOS, chat delimiters (EOS = <|im_end|>), padding.
SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>")

# Common English pairs; each merge's result is a token, so the BPE reaches every multi-byte token.
_MERGES_TEXT = (
    "Ġ t", "Ġ a", "h e", "i n", "r e", "o n", "Ġt he", "e r", "Ġ s", "a t", "Ġ w", "Ġ o", "e n", "Ġ c", "i t",
    "i s", "a n", "o r", "e s", "Ġ b", "e d", "Ġ f", "in g", "Ġ p", "o u", "Ġ m", "a r", "Ġ d", "a l", "Ġ h",
    "l e", "Ġ i", "Ġ n", "Ġ 1", "Ġ 2", "Ġ \"", "\" :", "Ġ l", "Ġ r", "Ġ e", "s t", "a s", "i c", "Ġ g", "Ġ y",
    "l l", "Ġt o", "n d", "Ġa nd",
)

_DTYPES = {"f32": "F32", "f16": "F16", "q8_0": "Q8_0", "q4_0": "Q4_0"}
_FILE_TYPES = {"f32": "ALL_F32", "f16": "MOSTLY_F16", "q8_0": "MOSTLY_Q8_0", "q4_0": "MOSTLY_Q4_0"}


def byte_vocab(vocab_size: int | None = None) -> tuple[list[str], list[int], list[str]]:
    """Tokens (GPT-2 byte spelling), their types and the merges; padded with unused tokens to `vocab_size`."""
    import gguf
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    spelling = bytes_to_unicode()
    tokens = [spelling[b] for b in range(256)]
    for merge in _MERGES_TEXT:
        left, right = merge.split(" ")
        assert left in tokens and right in tokens, merge  # BPE needs both halves in the vocabulary
        tokens.append(left + right)
    types = [int(gguf.TokenType.NORMAL)] * len(tokens)
    tokens += list(SPECIALS)
    types += [int(gguf.TokenType.CONTROL)] * len(SPECIALS)
    if vocab_size is not None:
        if vocab_size < len(tokens):
            raise ValueError(f"vocab_size must be at least {len(tokens)} (bytes, merges and special tokens), got {vocab_size}")
        extra = vocab_size - len(tokens)
        tokens += [f"<|reserved_{i}|>" for i in range(extra)]
        types += [int(gguf.TokenType.UNUSED)] * extra
    assert len(set(tokens)) == len(tokens)
    return tokens, types, list(_MERGES_TEXT)


def _is_plain(index: int) -> bool:
    """Token id of a printable ASCII byte, newline, or an ASCII merge (the tokens the random model prefers)."""
    if index < 256:
        return 32 <= index < 127 or index == 10
    return index < 256 + len(_MERGES_TEXT)


def write_random_llama_gguf(
    path: Path,
    *,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    ff: int = 128,
    context: int = 1024,
    seed: int = 0,
    vocab: str = "bytes",
    vocab_size: int | None = None,
    dtype: str = "f32",
    rope_theta: float = 10000.0,
    init_std: float = 0.02,
    prefer_ascii: bool = True,
    chat_template: str = CHATML_TEMPLATE,
) -> Path:
    """Write a random llama GGUF; `vocab_size`/`dtype` (f32, f16, q8_0, q4_0) allow real shapes; tensors stream to disk.

    With `prefer_ascii` the weights make printable ASCII and merge tokens far likelier than lone non-ASCII
    bytes and unused tokens, so sampled text stays valid UTF-8 (llama-cpp-python ignores max_tokens while
    a completion ends in an incomplete UTF-8 sequence and would run until the context is full).
    `chat_template` is stored as tokenizer.chat_template (tests give hostile ones).
    """
    import gguf
    from gguf.quants import quant_shape_to_byte_shape, quantize

    if vocab != "bytes":
        raise ValueError(f"vocab must be 'bytes', got {vocab!r}")
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    if hidden % heads or heads % kv_heads:
        raise ValueError(f"hidden ({hidden}) must divide by heads ({heads}) and heads by kv_heads ({kv_heads})")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tokens, types, merges = byte_vocab(vocab_size)
    n_vocab = len(tokens)
    head_dim = hidden // heads
    qtype = gguf.GGMLQuantizationType[_DTYPES[dtype]]

    writer = gguf.GGUFWriter(path, "llama")
    writer.add_name(f"random-llama-h{hidden}-l{layers}-v{n_vocab}")
    writer.add_file_type(int(gguf.LlamaFileType[_FILE_TYPES[dtype]]))
    writer.add_context_length(context)
    writer.add_embedding_length(hidden)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(ff)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(rope_theta)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(n_vocab)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(tokens.index("<|endoftext|>"))
    writer.add_eos_token_id(tokens.index("<|im_end|>"))
    writer.add_pad_token_id(tokens.index("<|pad|>"))
    writer.add_add_bos_token(False)
    writer.add_add_eos_token(False)
    writer.add_chat_template(chat_template)

    # (name, numpy shape (rows, cols), is a matrix): norms stay f32 like every llama.cpp conversion.
    specs: list[tuple[str, tuple[int, ...], bool]] = [("token_embd.weight", (n_vocab, hidden), True)]
    for i in range(layers):
        specs += [
            (f"blk.{i}.attn_norm.weight", (hidden,), False),
            (f"blk.{i}.attn_q.weight", (hidden, hidden), True),
            (f"blk.{i}.attn_k.weight", (kv_heads * head_dim, hidden), True),
            (f"blk.{i}.attn_v.weight", (kv_heads * head_dim, hidden), True),
            (f"blk.{i}.attn_output.weight", (hidden, hidden), True),
            (f"blk.{i}.ffn_norm.weight", (hidden,), False),
            (f"blk.{i}.ffn_gate.weight", (ff, hidden), True),
            (f"blk.{i}.ffn_up.weight", (ff, hidden), True),
            (f"blk.{i}.ffn_down.weight", (hidden, ff), True),
        ]
    specs += [("output_norm.weight", (hidden,), False), ("output.weight", (n_vocab, hidden), True)]

    def tensor_type(matrix: bool) -> gguf.GGMLQuantizationType:
        return qtype if matrix else gguf.GGMLQuantizationType.F32

    for name, shape, matrix in specs:
        t = tensor_type(matrix)
        if t in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
            np_dtype = np.float32 if t == gguf.GGMLQuantizationType.F32 else np.float16
            writer.add_tensor_info(name, shape, np.dtype(np_dtype), int(np.prod(shape)) * np.dtype(np_dtype).itemsize)
        else:
            byte_shape = quant_shape_to_byte_shape(shape, t)
            writer.add_tensor_info(name, byte_shape, np.dtype(np.uint8), int(np.prod(byte_shape)), raw_dtype=t)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    rng = np.random.default_rng(seed)
    favoured = np.array([_is_plain(i) for i in range(n_vocab)])
    for name, shape, matrix in specs:
        if matrix:
            data = rng.standard_normal(shape, dtype=np.float32)
            data *= np.float32(init_std)  # in place: one copy of the largest tensor (embeddings) at a time
            if prefer_ascii and name == "token_embd.weight":
                # A constant residual direction (about half the norm) the output layer reads as a token prior.
                data[:, 0] = init_std * np.sqrt(hidden)
            elif prefer_ascii and name == "output.weight":
                data[:, 0] = np.where(favoured, 1.0, -2.0)
                data[[tokens.index(s) for s in SPECIALS], 0] = 0.0
        else:
            data = np.ones(shape, dtype=np.float32)
        writer.write_tensor_data(quantize(data, tensor_type(matrix)))
        del data
    writer.close()
    return path
