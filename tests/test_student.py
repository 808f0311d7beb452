"""Student training, saving, generation and option scoring on a tiny random llama with a byte-level tokenizer (CPU, seconds)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from models.batching import IGNORE, collate, encode_pair, epoch_plan, length_grouped_batches, truncate_left
from models.device import device_info, plan_training
from models.errors import ConfigError, DataError, ModelNotFoundError
from models.params import LoraParams, TrainParams
from models.student import Student
from models.student_score import StudentScorer
from models.student_train import StudentTrainer
from tests.reference_scorer import PairScorer

PAIRS = [
    ("Review: a joy from start to end\nSentiment:", " positive"),
    ("Review: dull, long and empty\nSentiment:", " negative"),
    ("Review: warm and clever\nSentiment:", " positive"),
    ("Review: a mess\nSentiment:", " negative"),
]
FAST = TrainParams(epochs=10, learning_rate=1e-2, batch_size=2, warmup_ratio=0.0, scheduler="constant")
MAX_LEN = 96


def write_tiny_llama(path: Path, seed: int = 0, arch: str = "llama") -> Path:
    """A random 2-layer causal LM (llama, or `arch`: qwen2, gemma2, phi) with a byte-level BPE tokenizer (BOS added, EOS/PAD defined), saved as an HF folder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    vocab = {"<s>": 0, "</s>": 1, "<pad>": 2}
    for ch in sorted(ByteLevel.alphabet()):
        vocab[ch] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    torch.manual_seed(seed)
    AutoModelForCausalLM.from_config(tiny_config(arch, len(vocab))).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def tiny_config(arch: str, vocab_size: int) -> object:
    """A 2-layer config of `arch`; gemma2's sliding window (8) is far shorter than the test prompts."""
    from transformers import Gemma2Config, LlamaConfig, PhiConfig, Qwen2Config

    shape = dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=2,
        initializer_range=0.2,  # at 0.02 the frozen head caps logits near ±1 and the loss cannot fall far
    )
    if arch == "qwen2":
        return Qwen2Config(**shape)
    if arch == "gemma2":
        return Gemma2Config(**shape, head_dim=16, sliding_window=8, query_pre_attn_scalar=16)
    if arch == "phi":  # not in _PLAIN_HEAD: logits come from the whole model
        return PhiConfig(**shape)
    return LlamaConfig(**shape)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("tiny_llama"))


@pytest.fixture()
def student(tiny_folder: Path) -> Student:
    s = Student.load(tiny_folder, plan_training("none"), LoraParams(r=8, alpha=16, dropout=0.0), MAX_LEN)
    yield s
    s.free()


@pytest.fixture(scope="module")
def trained(tiny_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Student, Path]:
    """A student trained on PAIRS until it knows them, and its saved adapter."""
    s = Student.load(tiny_folder, plan_training("none"), LoraParams(r=8, alpha=16, dropout=0.0), MAX_LEN)
    out = tmp_path_factory.mktemp("adapter")
    StudentTrainer(s).train(PAIRS, TrainParams(epochs=15, learning_rate=1e-2, batch_size=2, warmup_ratio=0.1), seed=0, out_dir=out)
    return s, out


def full_logits(s: Student, text: str) -> torch.Tensor:
    """Reference logits of the whole sequence through the ordinary forward pass."""
    ids = torch.tensor([s.tokenizer(text)["input_ids"]])
    with torch.inference_mode():
        return s.lm(input_ids=ids).logits[0]


# ---------------------------------------------------------------- device plan


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU-only expectation")
def test_plan_training_on_cpu_is_lora_fp32_with_a_reason() -> None:
    plan = plan_training("auto")
    assert (plan.mode, plan.device, plan.compute_dtype) == ("lora-fp32", "cpu", "float32")
    assert "CPU" in plan.reason and "no CUDA GPU" in plan.reason
    nf4 = plan_training("nf4")
    assert nf4.mode == "qlora-nf4" and nf4.compute_dtype == "float32" and "CPU" in nf4.reason
    assert plan_training("none").mode == "lora-fp32"
    info = device_info()
    assert info["cpu_count"] >= 1 and info["torch"] == torch.__version__ and info["cuda"] is False


def test_plan_training_refuses_unknown_quantization() -> None:
    with pytest.raises(ConfigError, match="student.quantization"):
        plan_training("int3")


# ---------------------------------------------------------------- encoding and batching


def test_loss_mask_labels_response_and_eos_only(student: Student) -> None:
    tok = student.tokenizer
    enc = encode_pair(tok, "Review: ok\nSentiment:", " positive", MAX_LEN, student.eos_id)
    prompt_ids = tok("Review: ok\nSentiment:")["input_ids"]
    response_ids = tok(" positive", add_special_tokens=False)["input_ids"]
    assert enc.input_ids == prompt_ids + response_ids + [student.eos_id]
    assert enc.labels == [IGNORE] * len(prompt_ids) + response_ids + [student.eos_id]
    assert enc.label_count == len(response_ids) + 1


def test_overlong_prompt_is_cut_from_the_left_keeping_bos(student: Student) -> None:
    tok = student.tokenizer
    enc = encode_pair(tok, "x" * 200 + "END:", " yes", 32, student.eos_id)
    assert len(enc) == 32
    assert enc.input_ids[0] == tok.bos_token_id
    assert tok.decode(enc.input_ids[1:], skip_special_tokens=True).endswith("xEND: yes")
    assert enc.labels[-5:] == tok(" yes", add_special_tokens=False)["input_ids"] + [student.eos_id]
    assert truncate_left([7, 1, 2, 3], 2, bos=None) == [2, 3]


def test_length_grouped_batches_cover_each_example_once_and_cut_padding() -> None:
    rng = random.Random(0)
    lengths = [rng.choice([8, 12, 20, 200, 300]) for _ in range(200)]
    batches = length_grouped_batches(lengths, 8, random.Random(1))
    assert sorted(i for b in batches for i in b) == list(range(200))
    assert max(lengths[i] for i in batches[0]) == max(lengths)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    plain = epoch_plan(lengths, 8, 25, seed=1, grouped=False)
    padded_plain = sum(len(b) * max(lengths[i] for i in b) for b in plain)
    assert padded < 0.6 * padded_plain
    assert len(epoch_plan(lengths, 8, 63, seed=0)) == 63
    assert TrainParams(epochs=2.5, batch_size=8).micro_batches(200) == 63  # 25 batches an epoch, 2.5 epochs


def test_collate_pads_to_the_batch_max_on_either_side(student: Student) -> None:
    a = encode_pair(student.tokenizer, "ab", " c", MAX_LEN, student.eos_id)
    b = encode_pair(student.tokenizer, "abcdef", " c", MAX_LEN, student.eos_id)
    right = collate([a, b], student.pad_id)
    assert right["input_ids"].shape == (2, len(b))
    assert right["attention_mask"][0].tolist() == [1] * len(a) + [0] * (len(b) - len(a))
    assert (right["labels"][0, len(a) :] == IGNORE).all()
    left = collate([a, b], student.pad_id, left=True)
    assert left["attention_mask"][0].tolist() == [0] * (len(b) - len(a)) + [1] * len(a)
    assert left["input_ids"][0, -len(a) :].tolist() == a.input_ids


# ---------------------------------------------------------------- training


def test_training_changes_only_the_adapter_and_loss_falls(student: Student, tmp_path: Path) -> None:
    base_before = {k: v.clone() for k, v in student.base.state_dict().items()}
    steps: list[tuple[int, int, float]] = []
    stats = StudentTrainer(student).train(PAIRS, FAST, seed=0, out_dir=tmp_path / "a", on_step=lambda s, t, l: steps.append((s, t, l)))
    assert stats.steps == 20 and len(steps) == 20 and steps[-1][:2] == (20, 20)
    assert stats.losses[-1] < 0.3 * stats.losses[0]
    assert stats.trainable_params > 0 and stats.tokens > 0 and stats.peak_vram_mb is None
    assert stats.tokens <= stats.padded_tokens
    saved = load_file(str(tmp_path / "a" / "adapter_model.safetensors"))
    assert saved and all("lora_" in k for k in saved)
    assert any(k.endswith("lora_B.weight") and v.abs().sum() > 0 for k, v in saved.items())  # B starts at zero
    student.detach_adapter()
    after = student.base.state_dict()
    assert set(after) == set(base_before)
    assert all(torch.equal(after[k], base_before[k]) for k in after)


def test_same_seed_gives_the_same_adapter_and_retraining_starts_from_base(student: Student, tmp_path: Path) -> None:
    cfg = TrainParams(epochs=2, learning_rate=1e-2, batch_size=2, grad_accum=2)
    trainer = StudentTrainer(student)
    s1 = trainer.train(PAIRS, cfg, seed=3, out_dir=tmp_path / "a")
    s2 = trainer.train(PAIRS, cfg, seed=3, out_dir=tmp_path / "b")
    s3 = trainer.train(PAIRS, cfg, seed=4, out_dir=tmp_path / "c")
    a, b, c = (load_file(str(p / "adapter_model.safetensors")) for p in (tmp_path / "a", tmp_path / "b", tmp_path / "c"))
    assert s1.losses == s2.losses and s1.steps == 2
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a) and s3.losses != s1.losses


def test_continue_from_an_adapter(student: Student, tmp_path: Path) -> None:
    trainer = StudentTrainer(student)
    first = trainer.train(PAIRS, FAST, seed=0, out_dir=tmp_path / "a")
    more = trainer.train(PAIRS, TrainParams(epochs=1, batch_size=2, learning_rate=1e-3), seed=0, out_dir=tmp_path / "b", init_adapter=tmp_path / "a")
    assert more.losses[0] < 0.5 * first.losses[0]  # starts where the first run ended, not from scratch


def test_gradient_checkpointing_gives_the_same_losses(tiny_folder: Path, tmp_path: Path) -> None:
    lora = LoraParams(r=8, alpha=16, dropout=0.0)
    plain = StudentTrainer(Student.load(tiny_folder, plan_training("none"), lora, MAX_LEN)).train(PAIRS, FAST, seed=0, out_dir=tmp_path / "a")
    ckpt = Student.load(tiny_folder, plan_training("none"), lora, MAX_LEN, gradient_checkpointing=True)
    assert getattr(ckpt.lm, "is_activation_checkpointing", None) or ckpt.lm.is_gradient_checkpointing
    again = StudentTrainer(ckpt).train(PAIRS, FAST, seed=0, out_dir=tmp_path / "b")
    assert again.losses == pytest.approx(plain.losses, rel=1e-4)


def test_qlora_nf4_trains_and_reloads_on_the_cpu(tiny_folder: Path, tmp_path: Path) -> None:
    plan = plan_training("nf4")
    lora = LoraParams(r=8, alpha=16, dropout=0.0)
    s = Student.load(tiny_folder, plan, lora, MAX_LEN)
    assert type(s.base.model.layers[0].self_attn.q_proj).__name__ == "Linear4bit"
    stats = StudentTrainer(s).train(PAIRS, FAST, seed=0, out_dir=tmp_path / "q")
    assert stats.losses[-1] < 0.3 * stats.losses[0]
    labels = [" positive", " negative"]
    prompts = [p for p, _ in PAIRS]
    scores = StudentScorer(s).score_options(prompts, [labels] * 4, batch_size=4)
    # 4-bit kernels round differently for different input shapes, and how much depends on the CPU's vector unit: on
    # an AMD EPYC host the cached and per-pair paths differ by 2.7e-4 at a log-probability of -9.11 (3e-5 of it).
    # So NF4 is held to 1e-4 relative; the fp32 tests below hold the two paths to 1e-4 absolute.
    assert PairScorer(s).score_options(prompts, [labels] * 4, batch_size=4) == [pytest.approx(r, rel=1e-4, abs=1e-4) for r in scores]
    again = Student.load(tiny_folder, plan, lora, MAX_LEN, adapter=tmp_path / "q")
    assert StudentScorer(again).score_options(prompts, [labels] * 4, batch_size=4) == scores


def test_empty_training_set_is_refused(student: Student, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="empty"):
        StudentTrainer(student).train([], FAST, seed=0, out_dir=tmp_path / "a")


def test_saved_adapter_reloads_with_identical_logits(trained: tuple[Student, Path], tiny_folder: Path) -> None:
    s, adapter = trained
    text = PAIRS[0][0] + PAIRS[0][1]
    again = Student.load(tiny_folder, plan_training("none"), LoraParams(r=8, alpha=16), MAX_LEN, adapter=adapter)
    assert torch.equal(full_logits(s, text), full_logits(again, text))
    plain = Student.load(tiny_folder, plan_training("none"), LoraParams(), MAX_LEN)
    assert not torch.allclose(full_logits(plain, text), full_logits(again, text))
    with pytest.raises(ModelNotFoundError, match="adapter_config.json"):
        Student.load(tiny_folder, plan_training("none"), LoraParams(), MAX_LEN, adapter=tiny_folder)


# ---------------------------------------------------------------- generation


def test_generate_keeps_order_cuts_at_stop_and_batches_like_single(trained: tuple[Student, Path]) -> None:
    s, _ = trained
    prompts = [p for p, _ in PAIRS] + ["Review: it was fine I guess, a long and winding film\nSentiment:", "Hi"]
    seen: list[tuple[int, int]] = []
    scorer = StudentScorer(s)
    batched = scorer.generate(prompts, max_new_tokens=12, stop=["\n"], batch_size=3, on_progress=lambda d, t: seen.append((d, t)))
    single = [scorer.generate([p], max_new_tokens=12, stop=["\n"], batch_size=1)[0] for p in prompts]
    assert batched == single
    assert seen[-1] == (len(prompts), len(prompts))
    assert [batched[i] for i in range(4)] == [r for _, r in PAIRS]  # the model learnt them, EOS ends each
    assert all("\n" not in out for out in batched)
    cut = scorer.generate([PAIRS[0][0]], max_new_tokens=12, stop=["si"], batch_size=1)
    assert cut == [" po"]


def test_generate_without_stop_strings_runs_to_eos_or_budget(student: Student) -> None:
    outs = StudentScorer(student).generate(["abc", "a much longer prompt than the first"], max_new_tokens=5, stop=[], batch_size=2)
    assert len(outs) == 2
    assert all(len(o) <= 5 for o in outs)  # 5 byte tokens decode to at most 5 characters


# ---------------------------------------------------------------- option scoring


def reference_scores(s: Student, prompt: str, options: list[str]) -> list[float]:
    """Log-likelihoods from the ordinary full forward pass, one sequence at a time."""
    out = []
    p = s.tokenizer(prompt)["input_ids"]
    for o in options:
        ids = s.tokenizer(o, add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            logp = torch.log_softmax(s.lm(input_ids=torch.tensor([p + ids])).logits[0].float(), -1)
        out.append(sum(logp[len(p) - 1 + k, t].item() for k, t in enumerate(ids)))
    return out


def test_score_options_batched_equals_unbatched_and_the_reference(trained: tuple[Student, Path]) -> None:
    s, _ = trained
    prompts = [p for p, _ in PAIRS] + ["Q: 2+2?\nA:", "Pick:"]
    options = [[" positive", " negative"]] * 4 + [[" 4", " 5", " four"], ["a", "b", "c"]]
    seen: list[tuple[int, int]] = []
    scorer = StudentScorer(s)
    batched = scorer.score_options(prompts, options, batch_size=4, on_progress=lambda d, t: seen.append((d, t)))
    single = [scorer.score_options([p], [o], batch_size=1)[0] for p, o in zip(prompts, options)]
    for got, one, p, o in zip(batched, single, prompts, options):
        assert got == pytest.approx(one, abs=1e-4)
        assert got == pytest.approx(reference_scores(s, p, o), abs=1e-4)
    assert seen[-1] == (len(prompts), len(prompts))
    s._fast_head = False  # the generic path (full logits) must agree with the head-on-selected-positions path
    try:
        assert scorer.score_options(prompts, options, batch_size=4) == [pytest.approx(b, abs=1e-4) for b in batched]
    finally:
        s._fast_head = True


def test_inference_folds_the_adapter_in_and_training_afterwards_starts_from_the_base(student: Student, tmp_path: Path) -> None:
    base_before = {k: v.clone() for k, v in student.base.state_dict().items()}
    first = StudentTrainer(student).train(PAIRS, FAST, seed=0, out_dir=tmp_path / "a")
    labels = [" positive", " negative"]
    with_branches = [reference_scores(student, p, labels) for p, _ in PAIRS]  # LoRA layers not merged yet
    merged = StudentScorer(student).score_options([p for p, _ in PAIRS], [labels] * len(PAIRS), batch_size=4)
    assert student._merged
    assert merged == [pytest.approx(r, abs=1e-4) for r in with_branches]
    again = StudentTrainer(student).train(PAIRS, FAST, seed=0, out_dir=tmp_path / "b")
    assert again.losses == pytest.approx(first.losses, rel=1e-4), "the merged weights leaked into the next training"
    student.detach_adapter()
    after = student.base.state_dict()
    assert all(torch.allclose(after[k], base_before[k], atol=1e-6) for k in after)


# Prompts of 5 to 70 tokens, options of 1 to 23 tokens, a lone option, an empty one, all-one-token options (fast path).
MIXED_PROMPTS = [
    "Q: 2+2?\nA:",
    "Pick:",
    "Review: a joy from start to end, warm and clever and never dull\nSentiment:",
    "Subject of: what is the area of a circle of radius 3?\nSubject:",
    "x" * 60 + "\nAnswer:",
    "One:",
]
MIXED_OPTIONS = [
    [" 4", " 5", " four", " forty-four"],
    ["a", "b", "c"],
    [" positive", " negative", " neutral"],
    [" Algebra", " Counting & Probability", " Geometry", " Intermediate Algebra", " Number Theory", " Prealgebra", " Precalculus"],
    [" yes", "", " no way"],
    [" only this one"],
]


def assert_close(got: list[list[float]], want: list[list[float]]) -> None:
    """Same shape, every score within 1e-4."""
    assert [len(r) for r in got] == [len(r) for r in want]
    diff = max(abs(a - b) for g, w in zip(got, want) for a, b in zip(g, w))
    assert diff < 1e-4, diff


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma2", "phi"])
def test_score_options_from_the_prompt_cache_equals_the_per_pair_path(arch: str, tmp_path: Path) -> None:
    s = Student.load(write_tiny_llama(tmp_path / arch, seed=1, arch=arch), plan_training("none"), LoraParams(), MAX_LEN)
    assert s._fast_head == (arch != "phi")
    old = PairScorer(s).score_options(MIXED_PROMPTS, MIXED_OPTIONS, batch_size=4)
    assert old[4][1] == 0.0  # an empty option scores nothing
    for batch_size in (1, 3, 16):  # 3 splits both the prompt batches and one prompt's options
        seen: list[tuple[int, int]] = []
        new = StudentScorer(s).score_options(MIXED_PROMPTS, MIXED_OPTIONS, batch_size, on_progress=lambda d, t: seen.append((d, t)))
        assert_close(new, old)
        assert seen[-1] == (len(MIXED_PROMPTS), len(MIXED_PROMPTS)) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    for p, o, row in zip(MIXED_PROMPTS, MIXED_OPTIONS, old):
        assert_close([row], [reference_scores(s, p, o) if all(o) else row])
    s.free()


def test_score_options_from_the_prompt_cache_with_the_adapter_folded_in_and_the_generic_head(trained: tuple[Student, Path]) -> None:
    s, _ = trained
    scorer, reference = StudentScorer(s), PairScorer(s)
    assert_close(scorer.score_options(MIXED_PROMPTS, MIXED_OPTIONS, batch_size=3), reference.score_options(MIXED_PROMPTS, MIXED_OPTIONS, 3))
    assert s._merged
    s._fast_head = False
    try:
        assert_close(scorer.score_options(MIXED_PROMPTS, MIXED_OPTIONS, batch_size=3), reference.score_options(MIXED_PROMPTS, MIXED_OPTIONS, 3))
    finally:
        s._fast_head = True


def test_an_overlong_prompt_is_cut_once_to_fit_its_longest_option(student: Student) -> None:
    tok = student.tokenizer
    prompt, opts = "y" * 150 + "\nAnswer:", [" ok", " a longer one"]
    got = StudentScorer(student).score_options([prompt], [opts], batch_size=2)[0]
    cut = tok.decode(truncate_left(tok(prompt)["input_ids"], MAX_LEN - len(" a longer one"), tok.bos_token_id)[1:])
    assert len(tok(cut)["input_ids"]) == MAX_LEN - len(" a longer one")
    assert_close([got], [reference_scores(student, cut, opts)])


def test_score_options_prefers_the_trained_label(trained: tuple[Student, Path]) -> None:
    s, _ = trained
    labels = [" positive", " negative"]
    scores = StudentScorer(s).score_options([p for p, _ in PAIRS], [labels] * len(PAIRS), batch_size=8)
    assert [labels[max(range(2), key=row.__getitem__)] for row in scores] == [r for _, r in PAIRS]


def test_free_releases_the_model(tiny_folder: Path) -> None:
    s = Student.load(tiny_folder, plan_training("none"), LoraParams(), MAX_LEN)
    s.free()
    assert s.base is None
