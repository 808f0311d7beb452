"""A merged llama or qwen2 Hugging Face folder as a GGUF: f16 written with the gguf package, then llama.cpp's quantizer.

Our own mapping (llama.cpp's convert_hf_to_gguf.py documents the format): tensors are renamed through gguf's
TensorNameMap, the llama q/k rows are reordered from Hugging Face's rotate-half RoPE layout to llama.cpp's interleaved
pairs (qwen2 runs NEOX RoPE in llama.cpp and keeps them), matrices go to f16 and norms and biases stay f32. The
tokenizer is byte-level BPE ('gpt2' in GGUF); its pre-tokenizer name is read off tokenizer.json, and the written file's
tokenization is compared with the Hugging Face tokenizer's before the export counts as done.
"""

from __future__ import annotations

import ctypes
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.errors import ModelFileError
from models.fresh_process import in_fresh_process

ARCHITECTURES = {"LlamaForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2"}
QUANTS = {"q8_0": 7, "q4_k_m": 15, "q4_0": 2, "q5_k_m": 17, "q6_k": 18}  # llama_ftype values

# Pre-tokenizer regexes of tokenizer.json's Split step, by llama.cpp's name for them.
_SPLIT_REGEX = {
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+": "qwen2",
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+": "llama-bpe",
}
PROBES = (
    "Review: a gorgeous, witty, seductive movie.\nSentiment: positive",
    "Tom has 12 apples and buys 345 more; 3.14159 * 2 = 6.28318.  Twice  spaced\n\n\tand tabbed",
    "I'm sure they'll say it's what we'd've done. DON'T SHOUT!!! (maybe?) [x] {y} <z> #tag @user",
    "Café naïve façade — “quoted” 東京 🙂 ü ß €100",
)


@dataclass(frozen=True)
class Shape:
    """What the GGUF header needs from config.json."""

    arch: str
    hidden: int
    layers: int
    ff: int
    heads: int
    kv_heads: int
    head_dim: int
    context: int
    rms_eps: float
    rope_theta: float
    vocab: int
    tied: bool


def read_shape(folder: Path) -> Shape:
    """The architecture and sizes of a Hugging Face folder; other architectures and RoPE scalings are refused."""
    config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    names = config.get("architectures") or [config.get("model_type", "?")]
    arch = ARCHITECTURES.get(names[0])
    if arch is None:
        raise ModelFileError(f"{folder}: GGUF export supports {', '.join(sorted(ARCHITECTURES))} (llama and qwen2), "
                             f"not {names[0]}; export the merged folder and convert it with llama.cpp's convert_hf_to_gguf.py")
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    if rope.get("rope_type", rope.get("type", "default")) not in ("default", None):
        raise ModelFileError(f"{folder}: RoPE scaling {rope.get('rope_type') or rope.get('type')!r} is not supported by "
                             "the GGUF export (plain RoPE only)")
    if config.get("quantization_config"):
        raise ModelFileError(f"{folder}: a quantized checkpoint; export from the merged 16-bit folder")
    if config.get("mlp_bias") or config.get("use_sliding_window"):
        raise ModelFileError(f"{folder}: MLP biases and sliding-window attention are not supported by the GGUF export")
    heads = int(config["num_attention_heads"])
    hidden = int(config["hidden_size"])
    return Shape(arch=arch, hidden=hidden, layers=int(config["num_hidden_layers"]), ff=int(config["intermediate_size"]),
                 heads=heads, kv_heads=int(config.get("num_key_value_heads") or heads),
                 head_dim=int(config.get("head_dim") or hidden // heads),
                 context=int(config.get("max_position_embeddings") or 2048), rms_eps=float(config.get("rms_norm_eps", 1e-6)),
                 rope_theta=float(rope.get("rope_theta", config.get("rope_theta", 10000.0))),
                 vocab=int(config["vocab_size"]), tied=bool(config.get("tie_word_embeddings", False)))


def pre_tokenizer(tokenizer_json: dict[str, Any]) -> str:
    """llama.cpp's name for the pre-tokenizer a byte-level BPE tokenizer.json describes."""
    model = tokenizer_json.get("model") or {}
    decoder = tokenizer_json.get("decoder") or {}
    if model.get("type") != "BPE" or not _byte_level(decoder):
        raise ModelFileError("GGUF export supports byte-level BPE tokenizers only (SmolLM2, Qwen2, Llama 3 style), "
                             f"not a {model.get('type')} tokenizer with a {decoder.get('type')} decoder")
    pre = tokenizer_json.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    kinds = [s.get("type") for s in steps]
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and steps[1].get("use_regex", True):
        return "smollm"
    if kinds == ["Split", "ByteLevel"] and not steps[1].get("use_regex", True):
        name = _SPLIT_REGEX.get((steps[0].get("pattern") or {}).get("Regex", ""))
        if name:
            return name
    raise ModelFileError(f"GGUF export does not know this tokenizer's pre-tokenizer ({kinds}); supported: GPT-2, SmolLM, "
                         "Qwen2 and Llama 3 style")


# What transformers 5.17 writes around ByteLevel when it builds a tokenizer from a byte-level GGUF: none of it acts on
# byte-level tokens but Strip, which drops one leading space of a decoded text (encoding, which the export checks
# token by token against llama.cpp's, is the ByteLevel pre-tokenizer's alone).
_AROUND_BYTE_LEVEL = {"ByteFallback", "Fuse", "Replace", "Strip"}


def _byte_level(decoder: dict[str, Any]) -> bool:
    """A ByteLevel decoder, alone or in a Sequence with only the steps transformers adds around it."""
    if decoder.get("type") == "ByteLevel":
        return True
    kinds = [d.get("type") for d in decoder.get("decoders", [])] if decoder.get("type") == "Sequence" else []
    return "ByteLevel" in kinds and set(kinds) <= _AROUND_BYTE_LEVEL | {"ByteLevel"}


def vocabulary(folder: Path, n_vocab: int) -> tuple[list[str], list[int]]:
    """Tokens by id (byte-level spelling; added tokens as written) and their GGUF types, padded to n_vocab."""
    import gguf
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    vocab = tok.get_vocab()
    size = max(n_vocab, max(vocab.values()) + 1)
    tokens = [f"[PAD{i}]" for i in range(size)]
    types = [int(gguf.TokenType.UNUSED)] * size
    for text, i in vocab.items():
        tokens[i], types[i] = text, int(gguf.TokenType.NORMAL)
    for i, added in tok.added_tokens_decoder.items():
        tokens[i] = added.content
        types[i] = int(gguf.TokenType.CONTROL if added.special else gguf.TokenType.USER_DEFINED)
    return tokens, types


def _tokenizer_adds(folder: Path) -> tuple[bool, bool]:
    """Whether the Hugging Face tokenizer adds BOS / EOS to a prompt (as training encoded prompts)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    ids = tok("x", add_special_tokens=True)["input_ids"]
    bos = tok.bos_token_id is not None and len(ids) > 1 and ids[0] == tok.bos_token_id
    eos = tok.eos_token_id is not None and len(ids) > 1 and ids[-1] == tok.eos_token_id
    return bool(bos), bool(eos)


def _unrotate(w: np.ndarray, n_head: int) -> np.ndarray:
    """Rows of a q/k projection from rotate-half order (first halves, then second halves per head) to interleaved pairs."""
    half = w.shape[0] // n_head // 2
    return w.reshape(n_head, 2, half, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _tensor_plan(folder: Path, shape: Shape) -> list[tuple[str, str, str, tuple[int, ...]]]:
    """(file, Hugging Face name, GGUF name, shape) of every tensor to write, in file order."""
    import gguf
    from safetensors import safe_open

    arch = gguf.MODEL_ARCH.LLAMA if shape.arch == "llama" else gguf.MODEL_ARCH.QWEN2
    names = gguf.get_tensor_name_map(arch, shape.layers)
    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise ModelFileError(f"{folder}: no .safetensors files to convert")
    plan = []
    for file in files:
        with safe_open(str(file), framework="pt") as fh:
            for key in fh.keys():
                if key.endswith("rotary_emb.inv_freq") or (key == "lm_head.weight" and shape.tied):
                    continue
                name = names.get_name(key, try_suffixes=(".weight", ".bias"))
                if name is None:
                    raise ModelFileError(f"{file.name}: tensor {key} has no GGUF name for {shape.arch}")
                plan.append((str(file), key, name, tuple(fh.get_slice(key).get_shape())))
    return plan


def _as_written(name: str, data: np.ndarray, shape: Shape) -> np.ndarray:
    """A tensor as the GGUF holds it: q/k rows reordered for llama, matrices f16, vectors f32."""
    if shape.arch == "llama" and name.startswith("blk.") and (".attn_q." in name or ".attn_k." in name):
        data = _unrotate(data, shape.heads if ".attn_q." in name else shape.kv_heads)
    return data.astype(np.float16 if data.ndim == 2 else np.float32)


def write_f16_gguf(folder: Path, out: Path, *, name: str, chat_template: str | None = None,
                   probes: Sequence[str] = ()) -> Path:
    """Write the model of a Hugging Face folder as an f16 GGUF (tensors streamed one at a time) and check its tokenizer."""
    import gguf
    import torch
    from safetensors import safe_open

    folder, out = Path(folder), Path(out)
    shape = read_shape(folder)
    tokenizer_json = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    pre = pre_tokenizer(tokenizer_json)
    tokens, types = vocabulary(folder, shape.vocab)
    plan = _tensor_plan(folder, shape)
    tmp = out.with_name(out.name + f".{os.getpid()}.tmp")
    writer = gguf.GGUFWriter(tmp, shape.arch)
    writer.add_name(name)
    writer.add_file_type(int(gguf.LlamaFileType.MOSTLY_F16))
    writer.add_context_length(shape.context)
    writer.add_embedding_length(shape.hidden)
    writer.add_block_count(shape.layers)
    writer.add_feed_forward_length(shape.ff)
    writer.add_head_count(shape.heads)
    writer.add_head_count_kv(shape.kv_heads)
    writer.add_rope_dimension_count(shape.head_dim)
    if shape.head_dim != shape.hidden // shape.heads:
        writer.add_key_length(shape.head_dim)
        writer.add_value_length(shape.head_dim)
    writer.add_rope_freq_base(shape.rope_theta)
    writer.add_layer_norm_rms_eps(shape.rms_eps)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    special = gguf.SpecialVocab(folder, load_merges=True, n_vocab=len(tokens))
    special.chat_template = chat_template
    add_bos, add_eos = _tokenizer_adds(folder)
    special.add_special_token = {"bos": add_bos, "eos": add_eos}
    special.add_to_gguf(writer, quiet=True)
    for _, _, gname, dims in plan:
        n = int(np.prod(dims))
        dtype = np.dtype(np.float16 if len(dims) == 2 else np.float32)
        writer.add_tensor_info(gname, dims, dtype, n * dtype.itemsize)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    handles: dict[str, Any] = {}
    try:
        for file, key, gname, _ in plan:
            if file not in handles:
                handles[file] = safe_open(file, framework="pt")
            data = handles[file].get_tensor(key).to(torch.float32).numpy()
            writer.write_tensor_data(_as_written(gname, data, shape))
            del data
        writer.close()
    finally:
        handles.clear()
    check_tokenizer(tmp, folder, [*PROBES, *probes])
    tmp.replace(out)
    return out


def check_tokenizer(gguf_path: Path, folder: Path, texts: Sequence[str]) -> None:
    """Refuse a GGUF whose llama.cpp tokenization of a text differs from the Hugging Face tokenizer's (BOS included)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    got_all = in_fresh_process(f"tokenizing with {gguf_path.name}", llama_tokenize, str(gguf_path), list(texts))
    for text, got in zip(texts, got_all, strict=True):
        want = list(tok(text, add_special_tokens=True)["input_ids"])
        if got != want:
            raise ModelFileError(f"{gguf_path.name}: llama.cpp tokenizes {text[:60]!r} as {got[:12]}…, the student's "
                                 f"tokenizer as {want[:12]}…; this tokenizer is not supported by the GGUF export")


def llama_tokenize(gguf_path: str, texts: list[str]) -> list[list[int]]:
    """llama.cpp's token ids of each text under the GGUF's own vocabulary, BOS included."""
    import llama_cpp

    llm = llama_cpp.Llama(gguf_path, vocab_only=True, verbose=False)
    try:
        return [llm.tokenize(text.encode("utf-8"), add_bos=True, special=True) for text in texts]
    finally:
        llm.close()


def quantize(src: Path, out: Path, kind: str, threads: int | None = None) -> Path:
    """llama.cpp's own quantizer (llama_model_quantize, default parameters) from an f16 GGUF to `kind`."""
    if kind not in QUANTS:
        raise ModelFileError(f"quantization {kind!r}: choose one of {', '.join(QUANTS)}")
    tmp = Path(out).with_name(Path(out).name + f".{os.getpid()}.tmp")
    code = in_fresh_process(f"quantizing {Path(src).name} to {kind}", llama_quantize, str(src), str(tmp), QUANTS[kind],
                            threads or 0)  # 0: llama.cpp uses every core
    if code != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        raise ModelFileError(f"llama.cpp could not quantize {Path(src).name} to {kind} (code {code})")
    tmp.replace(out)
    return Path(out)


def llama_quantize(src: str, out: str, ftype: int, threads: int) -> int:
    """llama_model_quantize's return code."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = threads
    return int(llama_cpp.llama_model_quantize(src.encode(), out.encode(), ctypes.byref(params)))
