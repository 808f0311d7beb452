"""Exports of a finished tiny run: data, adapter, merged 16-bit model, GGUFs, Modelfile; round trips against the run."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.config.schema import RunConfig
from engine.export.run_export import PARTS, export_run, read_manifest, sha256_of
from engine.store.db import Store
from engine.tasks.registry import make_task
from models.errors import ModelFileError
from models.export_modelfile import Modelfile, go_template, parse, render, write_text

pytest.importorskip("llama_cpp")


@pytest.fixture(scope="module")
def exported(tiny_run_store: tuple[Path, int], tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, int, Path]:
    """Every part of the tiny run exported once (q8_0 and q4_k_m quantizations)."""
    src, run_id = tiny_run_store
    work = tmp_path_factory.mktemp("export")
    shutil.copytree(src.parent, work / "store")
    store = Store(work / "store" / src.name)
    if not store.examples(run_id, split="synthetic", status="kept"):  # the random teacher's text rarely passes the checks
        _keep_one_synthetic(store, run_id)
    out = work / "out"
    export_run(store, run_id, out, PARTS, quants=("q8_0", "q4_k_m"))
    return store, run_id, out


def _keep_one_synthetic(store: Store, run_id: int) -> None:
    """Make one teacher-written example kept (inserting one, with its lineage, when the teacher wrote none)."""
    from engine.data.example_rows import example_from_row, example_row

    written = store.examples(run_id, split="synthetic")
    with store.transaction():
        if written:
            store.set_example_status(written[0].id, "kept")
            return
        parent = store.examples(run_id, split="seed")[0]
        store.insert_examples([example_row(run_id, "synthetic", example_from_row(parent), origin_round=0,
                                           parent_id=parent.id, teacher_call="k" * 64)])


def test_every_part_is_listed_with_size_and_sha256_and_is_owner_only(exported: tuple[Store, int, Path]) -> None:
    store, run_id, out = exported
    manifest = read_manifest(out, run_id)
    labels = {f["label"] for f in manifest["files"]}
    assert {"training set (rows)", "training set (prompt/completion)", "training set (chat messages)",
            "merged model (float16)", "GGUF f16", "GGUF q8_0", "GGUF q4_k_m", "Ollama Modelfile"} <= labels
    assert any(label.startswith("adapter (round") for label in labels)
    for item in manifest["files"]:
        path = out / item["path"]
        assert path.stat().st_size == item["size"] and sha256_of(path) == item["sha256"]
    for path in [out, *out.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), f"{path}: {oct(mode)}"


def test_datasets_carry_prompt_completion_chat_and_lineage(exported: tuple[Store, int, Path]) -> None:
    store, run_id, out = exported
    task = make_task(RunConfig.model_validate(store.run(run_id).config).task)
    plain = [json.loads(line) for line in (out / f"run-{run_id}-train.prompt-completion.jsonl").open()]
    chat = [json.loads(line) for line in (out / f"run-{run_id}-train.chat.jsonl").open()]
    kept = store.examples(run_id, split="seed") + store.examples(run_id, split="synthetic", status="kept")
    assert len(plain) == len(chat) == len(kept) and any(r["split"] == "synthetic" for r in plain)
    from engine.data.example_rows import example_from_row

    for p, c, row in zip(plain, chat, kept, strict=True):
        ex = example_from_row(row)
        assert p["prompt"] == task.render_prompt(ex) and p["completion"] == task.render_response(ex)
        assert c["messages"] == [{"role": "user", "content": p["prompt"]}, {"role": "assistant", "content": p["completion"]}]
        for record in (p, c):
            assert (record["id"], record["parent_id"], record["origin_round"], record["teacher_call"]) == (
                row.id, row.parent_id, row.origin_round, row.teacher_call)
        if row.split == "synthetic":
            assert p["parent_id"] is not None and p["teacher_call"] and p["origin_round"] is not None


def test_adapter_and_merged_folders_carry_a_model_card(exported: tuple[Store, int, Path]) -> None:
    from huggingface_hub import ModelCard

    store, run_id, out = exported
    best = store.run(run_id).best_round
    for folder, library in ((f"run-{run_id}-adapter", "peft"), (f"run-{run_id}-merged", "transformers")):
        card = ModelCard.load(out / folder / "README.md")
        assert card.data.library_name == library and f"Validation chose round {best}" in card.text
        assert "## Metrics per round" in card.text and "## Base model" in card.text
    merged = (out / f"run-{run_id}-merged" / "README.md").read_text()
    assert "merged into a float16 base" in merged and f'from_pretrained("run-{run_id}-merged")' in merged


def test_merged_model_is_a_16_bit_folder_with_the_adapter_folded_in(exported: tuple[Store, int, Path]) -> None:
    import torch
    from safetensors import safe_open
    from transformers import AutoTokenizer, GenerationConfig

    store, run_id, out = exported
    merged = out / f"run-{run_id}-merged"
    assert json.loads((merged / "config.json").read_text())["dtype"] == "float16"
    gen = GenerationConfig.from_pretrained(merged)
    tok = AutoTokenizer.from_pretrained(merged)
    assert gen.do_sample is False and gen.eos_token_id == tok.eos_token_id
    adapter = out / f"run-{run_id}-adapter"
    lora = {}
    with safe_open(str(adapter / "adapter_model.safetensors"), framework="pt") as fh:
        for key in fh.keys():
            lora[key] = fh.get_tensor(key)
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    a = next(v for k, v in lora.items() if "layers.0.self_attn.q_proj.lora_A" in k)
    b = next(v for k, v in lora.items() if "layers.0.self_attn.q_proj.lora_B" in k)
    from engine.export.run_export import student_folder

    base_dir = student_folder(RunConfig.model_validate(store.run(run_id).config))
    with safe_open(str(base_dir / "model.safetensors"), framework="pt") as fh:
        base = fh.get_tensor("model.layers.0.self_attn.q_proj.weight")
    with safe_open(str(merged / "model.safetensors"), framework="pt") as fh:
        folded = fh.get_tensor("model.layers.0.self_attn.q_proj.weight")
    assert folded.dtype == torch.float16
    want = base.float() + (b.float() @ a.float()) * cfg["lora_alpha"] / cfg["r"]
    assert torch.allclose(folded.float(), want, atol=2e-3) and not torch.allclose(folded.float(), base.float(), atol=1e-4)


def test_ggufs_hold_the_architecture_tokenizer_and_llama_cpp_quantizations(exported: tuple[Store, int, Path]) -> None:
    from gguf import GGMLQuantizationType, GGUFReader

    _, run_id, out = exported
    f16 = GGUFReader(out / f"run-{run_id}-f16.gguf")
    fields = {k: f.contents() for k, f in f16.fields.items() if k.startswith(("general.architecture", "tokenizer.ggml.pre",
                                                                               "tokenizer.ggml.add_bos", "tokenizer.ggml.model"))}
    assert fields == {"general.architecture": "llama", "tokenizer.ggml.pre": "qwen2", "tokenizer.ggml.add_bos_token": False,
                      "tokenizer.ggml.model": "gpt2"}
    types = {t.name: t.tensor_type for t in f16.tensors}
    assert types["blk.0.attn_q.weight"] == GGMLQuantizationType.F16 and types["blk.0.attn_norm.weight"] == GGMLQuantizationType.F32
    q8 = {t.name: t.tensor_type for t in GGUFReader(out / f"run-{run_id}-q8_0.gguf").tensors}
    assert q8["blk.0.attn_q.weight"] == GGMLQuantizationType.Q8_0


def _transformers_logits(folder: Path, ids: list[int]) -> np.ndarray:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    with torch.inference_mode():
        return model(torch.tensor([ids])).logits[0].numpy()


def _llama_logits(gguf: Path, ids: list[int]) -> np.ndarray:
    import llama_cpp

    llm = llama_cpp.Llama(str(gguf), n_ctx=256, logits_all=True, n_threads=1, verbose=False)
    llm.eval(ids)
    logits = np.array(llm.scores[: len(ids)])
    llm.close()
    return logits


def test_f16_gguf_logits_match_the_merged_model(exported: tuple[Store, int, Path]) -> None:
    from transformers import AutoTokenizer

    _, run_id, out = exported
    merged = out / f"run-{run_id}-merged"
    ids = AutoTokenizer.from_pretrained(merged)("Review: a gorgeous, witty, seductive movie.\nSentiment:")["input_ids"]
    want, got = _transformers_logits(merged, ids), _llama_logits(out / f"run-{run_id}-f16.gguf", ids)
    assert np.abs(want - got).max() < 0.05 and (want.argmax(-1) == got.argmax(-1)).all()


def test_modelfile_rebuilds_the_training_prompt_and_stops(exported: tuple[Store, int, Path]) -> None:
    store, run_id, out = exported
    text = (out / f"run-{run_id}.Modelfile").read_text()
    mf = parse(text)
    task = make_task(RunConfig.model_validate(store.run(run_id).config).task)
    assert mf.source == f"./run-{run_id}-q8_0.gguf" and mf.stops == tuple(task.stop) == ("\n",)
    assert 'PARAMETER stop """\n"""' in text and mf.parameters["temperature"] == "0" and mf.parameters["repeat_penalty"] == "1"
    from gguf import GGUFReader
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    from engine.data.example_rows import example_from_row

    field = GGUFReader(out / f"run-{run_id}-f16.gguf").fields["tokenizer.chat_template"]
    chat = Jinja2ChatFormatter(template=field.contents(), eos_token="", bos_token="")
    for row in store.examples(run_id):
        ex = example_from_row(row)
        assert render(mf.template, ex.input) == task.render_prompt(ex)
        assert chat(messages=[{"role": "user", "content": ex.input}]).prompt == task.render_prompt(ex)  # llama-server too


def test_round_trip_agrees_with_the_runs_predictions(exported: tuple[Store, int, Path], capsys: Any) -> None:
    from engine.export.check import roundtrip

    store, run_id, out = exported
    results = roundtrip(store, run_id, out, n_threads=1)
    with capsys.disabled():
        print("\nround trip on the tiny model: " + ", ".join(
            f"{name} {100 * r['agreement']:.1f}% ({r['same']}/{r['n']})" for name, r in results.items()))
    assert results["merged"]["agreement"] >= 0.99
    assert results["gguf f16"]["agreement"] >= 0.98 and results["gguf f16"]["template_differs"] == 0
    assert {"gguf q8_0", "gguf q4_k_m"} <= set(results)
    assert read_manifest(out, run_id)["roundtrip"]["gguf f16"]["n"] == results["gguf f16"]["n"] > 0


def test_gguf_generation_stops_where_the_student_stops(exported: tuple[Store, int, Path], capsys: Any) -> None:
    from models.device import plan_training
    from models.export_predict import GgufStudent
    from models.params import LoraParams
    from models.student import Student
    from models.student_score import StudentScorer

    store, run_id, out = exported
    mf = parse((out / f"run-{run_id}.Modelfile").read_text())
    task = make_task(RunConfig.model_validate(store.run(run_id).config).task)
    from engine.data.example_rows import example_from_row

    prompts = [render(mf.template, example_from_row(r).input) for r in store.examples(run_id)[:12]]
    gguf = GgufStudent(out / f"run-{run_id}-f16.gguf", n_ctx=512, n_threads=1, parameters=mf.parameters)
    got = gguf.generate(prompts, 12, list(mf.stops))
    gguf.close()
    student = Student.load(out / f"run-{run_id}-merged", plan_training("none"), LoraParams(), 256)
    want = StudentScorer(student).generate(prompts, 12, task.stop, 4)
    student.free()
    # The trained random model writes lone bytes of multi-byte characters: transformers decodes each as U+FFFD, llama.cpp
    # holds incomplete UTF-8 back; the tokens are the same, so the comparison drops U+FFFD.
    same = sum(g == w.replace("\ufffd", "") for g, w in zip(got, want, strict=True))
    with capsys.disabled():
        print(f"\ngreedy generation, f16 GGUF vs merged model: {same}/{len(prompts)} identical")
    assert all("\n" not in g for g in got) and same >= 0.9 * len(prompts)


def test_modelfile_values_round_trip_through_the_parser() -> None:
    template = go_template("Q: {{odd}} \"quoted\"\n", "\nA:")
    mf = Modelfile(source="./m.gguf", template=template, stops=("\n\n", "\nQuestion:", "END"),
                   parameters={"temperature": "0"})
    back = parse(write_text(mf, ["a comment"]))
    assert back == mf and render(back.template, "x") == "Q: {{odd}} \"quoted\"\nx\nA:"
    with pytest.raises(ModelFileError, match="triple quotes"):
        write_text(Modelfile(source="m", template='say """', stops=()))


def test_pre_tokenizer_names_and_refusals(tmp_path: Path) -> None:
    from models.export_gguf import pre_tokenizer, read_shape

    def tok(pre: dict[str, Any], model: str = "BPE") -> dict[str, Any]:
        return {"model": {"type": model}, "decoder": {"type": "ByteLevel"}, "pre_tokenizer": pre}

    level = {"type": "ByteLevel", "use_regex": True}
    assert pre_tokenizer(tok(level)) == "gpt-2"
    assert pre_tokenizer(tok({"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True}, level]})) == "smollm"
    with pytest.raises(ModelFileError, match="byte-level BPE"):
        pre_tokenizer(tok(level, model="WordPiece"))
    # transformers 5.17 (the H200's) builds this decoder from a byte-level GGUF; the export refused it there.
    wrapped = {"type": "Sequence", "decoders": [
        {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
        {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    assert pre_tokenizer({**tok(level), "decoder": wrapped}) == "gpt-2"
    metaspace = {"type": "Sequence", "decoders": [{"type": "Replace"}, {"type": "ByteFallback"}, {"type": "Fuse"}]}
    with pytest.raises(ModelFileError, match="with a Sequence decoder"):
        pre_tokenizer({**tok(level), "decoder": metaspace})
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"]}))
    with pytest.raises(ModelFileError, match="llama and qwen2"):
        read_shape(tmp_path)


def test_merge_refuses_a_quantized_base(tmp_path: Path) -> None:
    from models.export_merge import merge_adapter

    (tmp_path / "config.json").write_text(json.dumps({"quantization_config": {"load_in_4bit": True}}))
    with pytest.raises(ModelFileError, match="16-bit base"):
        merge_adapter(tmp_path, tmp_path, tmp_path / "out")


def test_qwen2_folder_converts_with_matching_logits(tiny_gguf: Path, tmp_path: Path) -> None:
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    from models.convert import resolve_student_folder
    from models.export_gguf import write_f16_gguf
    from models.paths import model_cache

    llama_dir = resolve_student_folder(tiny_gguf, model_cache())
    tok = AutoTokenizer.from_pretrained(llama_dir)
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    model = Qwen2ForCausalLM(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.5)  # visible q/k/v biases: a mapping that dropped them would show
    folder = tmp_path / "qwen2"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    gguf = write_f16_gguf(folder, tmp_path / "qwen2.gguf", name="tiny-qwen2")
    ids = tok("Tom has 12 apples.\nAnswer:")["input_ids"]
    want, got = _transformers_logits(folder, ids), _llama_logits(gguf, ids)
    assert np.abs(want - got).max() < 0.05 and (want.argmax(-1) == got.argmax(-1)).all()


@pytest.mark.parametrize("point", ["writing", "data", "adapter", "manifest"])
def test_an_export_killed_mid_way_is_finished_by_the_next_one(point: str, tiny_run_store: tuple[Path, int],
                                                                  tmp_path: Path) -> None:
    """kill -9 inside `l2l export`: no manifest claims the half-done export, and running it again gives the files an
    uninterrupted export writes, with no temporary file left."""
    src, run_id = tiny_run_store
    shutil.copytree(src.parent, tmp_path / "store")
    db = tmp_path / "store" / src.name
    reference = tmp_path / "reference"
    export_run(Store(db), run_id, reference)

    def export(fault: str | None) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "L2L_FAULT"}
        if fault:
            env["L2L_FAULT"] = fault
        return subprocess.run([sys.executable, "-m", "l2l_tui.cli", "export", str(run_id), "--out", str(tmp_path / "out"),
                               "--only", "data,adapter", "--store", str(db)], env=env, capture_output=True, text=True,
                              timeout=300)

    killed = export(f"export:{0 if point == 'writing' else run_id}:{point}:kill")
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not (tmp_path / "out" / f"run-{run_id}-manifest.json").exists()
    again = export(None)
    assert again.returncode == 0, again.stderr[-2000:]
    assert not list((tmp_path / "out").glob("*.tmp"))
    files = {f["path"]: f["sha256"] for f in read_manifest(tmp_path / "out", run_id)["files"]}
    assert files == {f["path"]: f["sha256"] for f in read_manifest(reference, run_id)["files"]}


def test_data_export_of_a_multiple_choice_run_keeps_text_byte_for_byte(tmp_path: Path) -> None:
    from engine.config.schema import resolve
    from engine.data.example_rows import example_row
    from engine.tasks.base import Example

    store = Store(tmp_path / "l2l.db")
    cfg = resolve({"name": "mc", "task": {"preset": "mmlu_stem"},
                   "data": {"seed": str(Path(__file__).parent / "fixtures" / "mmlu_stem_12.jsonl")}})
    seed = Example(input="Which is $\\frac{1}{2}$ of ½?", target=" B", answer="B", choices=("¼", "\\tan θ", "1", "2"))
    with store.transaction():
        run_id = store.create_run("mc", cfg.to_json(), cfg.digest(), 0, {}, {}, {})
        [seed_id] = store.insert_examples([example_row(run_id, "seed", seed)])
        written = [example_row(run_id, "synthetic", Example(input=f"Q{i} «é»", target=" A", answer="A",
                                                            choices=("x", "y", "z", "w")),
                               status=status, origin_round=0, parent_id=seed_id, teacher_call="k")
                   for i, status in enumerate(("kept", "rejected", "kept"))]
        store.insert_examples(written)
        store.upsert_round(run_id, 0, phase="done")
        store.update_run(run_id, status="finished", best_round=0)
    out = tmp_path / "out"
    export_run(store, run_id, out, ("data",))
    raw = (out / f"run-{run_id}-train.jsonl").read_bytes()
    rows = [json.loads(line) for line in raw.splitlines()]
    assert [r["input"] for r in rows] == [seed.input, "Q0 «é»", "Q2 «é»"]  # seeds first, rejected left out
    assert rows[0]["choices"] == list(seed.choices or ()) and list(rows[0]) == [
        "id", "split", "input", "target", "answer", "choices", "origin_round", "parent_id", "teacher_call"]
    assert "«é»".encode() in raw and b"\\\\frac" in raw  # UTF-8 as is; a backslash escaped once, as JSON wants
    task = make_task(cfg.task)
    plain = [json.loads(line) for line in (out / f"run-{run_id}-train.prompt-completion.jsonl").open(encoding="utf-8")]
    assert plain[0]["prompt"] == task.render_prompt(seed) and "¼" in plain[0]["prompt"]
    assert read_manifest(out, run_id)["prompt_input"] == "prompt"  # lettered options: no input-only frame


def _sentiment_store(path: Path, n_synthetic: int) -> tuple[Store, int]:
    """A finished sentiment run holding one seed and `n_synthetic` kept teacher rows."""
    from engine.config.schema import resolve
    from engine.data.example_rows import example_row
    from engine.tasks.base import Example

    store = Store(path)
    cfg = resolve({"name": "big", "task": {"preset": "rotten_tomatoes"},
                   "data": {"seed": str(Path(__file__).parent / "fixtures" / "rotten_tomatoes_20.jsonl")}})
    with store.transaction():
        run_id = store.create_run("big", cfg.to_json(), cfg.digest(), 0, {}, {}, {})
        [seed_id] = store.insert_examples([example_row(run_id, "seed", Example(input="A warm, funny film.",
                                                                               target=" positive", answer="positive"))])
        store.insert_examples([example_row(run_id, "synthetic", Example(input=f"Review number {i}: dull and slow.",
                                                                        target=" negative", answer="negative"),
                                           status="kept", origin_round=0, parent_id=seed_id, teacher_call="k")
                               for i in range(n_synthetic)])
        store.upsert_round(run_id, 0, phase="done")
        store.update_run(run_id, status="finished", best_round=0)
    return store, run_id


def test_the_data_export_streams_rows_instead_of_holding_the_training_set(tmp_path: Path) -> None:
    """Peak Python memory of a data export does not grow with the training set: 20 times the rows, about the same peak
    (holding them, as the export did before it streamed, took 28.8 MB against 2.7 MB here)."""
    import tracemalloc

    warm, warm_id = _sentiment_store(tmp_path / "warm.db", 10)
    export_run(warm, warm_id, tmp_path / "warm", ("data",))  # the first export imports datasets: not the rows' memory
    peaks = []
    for n in (500, 10_000):
        store, run_id = _sentiment_store(tmp_path / f"{n}.db", n)
        tracemalloc.start()
        export_run(store, run_id, tmp_path / f"out{n}", ("data",))
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert sum(1 for _ in (tmp_path / f"out{n}" / f"run-{run_id}-train.chat.jsonl").open()) == n + 1
    assert peaks[1] < peaks[0] + 2_000_000, peaks  # rows held: about 2.7 kB each
