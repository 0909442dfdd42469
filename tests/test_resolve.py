"""``--model NAME`` resolution: --models-dir, else $CXRTOOL_MODELS, else ./models."""

from __future__ import annotations

from pathlib import Path

import pytest

from cxrtool.errors import CxrError, ModelNotFoundError
from cxrtool.resolve import (
    MODELS_ENV,
    available_models,
    looks_like_path,
    model_path_for,
    models_dir,
    resolve_model,
)


def make_models(folder: Path, *names: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / f"{name}.keras").write_bytes(b"PK\x03\x04 fake keras zip")
    return folder


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv(MODELS_ENV, raising=False)


def test_bare_name_via_models_dir_argument(tmp_path):
    d = make_models(tmp_path / "m", "resnet50", "densenet121")
    assert resolve_model("resnet50", d) == d / "resnet50.keras"
    assert resolve_model("densenet121", str(d)) == d / "densenet121.keras"


def test_bare_name_via_env(tmp_path, monkeypatch):
    d = make_models(tmp_path / "envmodels", "ensemble")
    monkeypatch.setenv(MODELS_ENV, str(d))
    assert models_dir() == d
    assert resolve_model("ensemble") == d / "ensemble.keras"


def test_bare_name_via_default_models_folder(tmp_path, monkeypatch):
    make_models(tmp_path / "models", "vgg16")
    monkeypatch.chdir(tmp_path)
    assert models_dir() == Path("models")
    found = resolve_model("vgg16")
    assert found.resolve() == (tmp_path / "models" / "vgg16.keras").resolve()
    assert found.is_file()


def test_empty_env_falls_back_to_default(tmp_path, monkeypatch):
    make_models(tmp_path / "models", "vgg16")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(MODELS_ENV, "")
    assert resolve_model("vgg16").resolve() == (tmp_path / "models" / "vgg16.keras").resolve()


def test_explicit_dir_beats_env(tmp_path, monkeypatch):
    explicit = make_models(tmp_path / "explicit", "resnet50")
    env = make_models(tmp_path / "env", "resnet50")
    monkeypatch.setenv(MODELS_ENV, str(env))
    assert resolve_model("resnet50", explicit) == explicit / "resnet50.keras"
    assert resolve_model("resnet50") == env / "resnet50.keras"


def test_env_beats_default(tmp_path, monkeypatch):
    make_models(tmp_path / "models", "resnet50")
    env = make_models(tmp_path / "env", "resnet50")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(MODELS_ENV, str(env))
    assert resolve_model("resnet50") == env / "resnet50.keras"


def test_path_with_keras_suffix_is_used_as_is(tmp_path, monkeypatch):
    other = make_models(tmp_path / "elsewhere", "mine")
    monkeypatch.setenv(MODELS_ENV, str(tmp_path / "ignored"))
    p = other / "mine.keras"
    assert resolve_model(str(p)) == p
    assert resolve_model(str(p), tmp_path / "also-ignored") == p
    # relative path with the suffix, from the working folder
    monkeypatch.chdir(other)
    assert resolve_model("mine.keras") == Path("mine.keras")
    assert looks_like_path("mine.keras") and looks_like_path("a/b") and not looks_like_path("resnet50")


def test_missing_path_says_so(tmp_path):
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model(str(tmp_path / "gone.keras"))
    assert "gone.keras" in str(info.value)


def test_missing_model_lists_available(tmp_path):
    d = make_models(tmp_path / "m", "resnet50", "densenet121", "ensemble")
    (d / "notes.txt").write_text("not a model")
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model("resnet5", d)
    msg = str(info.value)
    assert "resnet5" in msg
    assert str(d) in msg
    assert "densenet121, ensemble, resnet50" in msg  # sorted, bare names
    assert "notes" not in msg
    assert "--models-dir" in msg  # which rule chose the folder
    assert isinstance(info.value, CxrError) and info.value.exit_code == 1


def test_missing_model_names_the_env_or_default_source(tmp_path, monkeypatch):
    d = make_models(tmp_path / "env", "a")
    monkeypatch.setenv(MODELS_ENV, str(d))
    with pytest.raises(ModelNotFoundError, match=MODELS_ENV):
        resolve_model("b")
    monkeypatch.delenv(MODELS_ENV)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelNotFoundError, match="default ./models") as info:
        resolve_model("b")
    assert "no .keras models" in str(info.value)  # ./models does not exist here


def test_empty_name_is_an_error(tmp_path):
    with pytest.raises(ModelNotFoundError):
        resolve_model("", tmp_path)


def test_available_models_and_model_path_for(tmp_path):
    d = make_models(tmp_path / "m", "b", "a")
    (d / "sub.keras").mkdir()  # a folder with the suffix is not a model
    assert available_models(d) == ["a", "b"]
    assert available_models(tmp_path / "missing") == []
    # where a new model will be saved, whether or not it exists yet
    assert model_path_for("new", d) == d / "new.keras"
    assert model_path_for(str(tmp_path / "x.keras"), d) == tmp_path / "x.keras"
