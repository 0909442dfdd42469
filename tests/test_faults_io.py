"""Fault injection: failed writes, hostile dataset folders and model files, flat heat maps,
and library chatter on stdout (issue 12).

Write failures are injected at the OS boundary, in process: ``open`` (and ``io.open``, which
pathlib uses) raises ``OSError(ENOSPC | EROFS | EACCES)`` for files opened for writing under a
destination, which is what a full disk, a read-only mount or a folder without permission does
to every writer (Keras, h5py through our buffer, Pillow, numpy, matplotlib, shutil). The tests
run as root here, so ``chmod`` cannot make a folder read-only for them. Where ``mount -t tmpfs``
works (root on Linux), a real 64 KiB file system fills up too; elsewhere that test skips.

Every failure must be: exit 1, exactly one ``error:`` line on stderr naming the destination (or
the manifest row) and the cause, nothing on stdout, no partial or hidden temporary file left.
"""

from __future__ import annotations

import builtins
import csv
import errno
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxrtool.errors import DatasetError, ModelFormatError
from cxrtool.manifest import FILE_SHA256, MANIFEST_NAME

from helpers_dataset import make_dataset, read_rows

CAUSES = {errno.ENOSPC: "no space left on the device", errno.EROFS: "read-only file system",
          errno.EACCES: "permission denied"}


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------


def fail_writes(monkeypatch, under: Path, code: int = errno.ENOSPC, name: str = "") -> list[str]:
    """Make every open-for-writing of a file under UNDER (whose name contains NAME) fail with
    CODE, as the file system would. Returns the list of paths refused (to check it happened)."""
    real_open = builtins.open
    root = os.path.abspath(under)
    refused: list[str] = []

    def fake_open(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, bytes, os.PathLike)) and any(c in mode for c in "wax+"):
            path = os.path.abspath(os.fsdecode(file))
            if path.startswith(root + os.sep) and name in os.path.basename(path):
                refused.append(path)
                raise OSError(code, os.strerror(code), path)
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(io, "open", fake_open)
    return refused


def one_error(capsys) -> str:
    """The single `error:` line of a failed command (and an empty stdout)."""
    out, err = capsys.readouterr()
    assert out == "", out
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert "internal error" not in lines[0] and "Traceback" not in err, err
    return lines[0]


def all_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def hidden_files(root: Path) -> list[str]:
    """Temporary names (``.NAME.xxxx.tmp``, ``.OUT.partial-xxxx``) left anywhere under ROOT."""
    return [f for f in all_files(root) if any(part.startswith(".") and part != ".cache" for part in Path(f).parts)]


def add_file_sha256(root: Path) -> Path:
    """The test datasets come without the column build-dataset writes; add it."""
    rows = read_rows(root)
    for r in rows:
        r[FILE_SHA256] = hashlib.sha256((root / r["file"]).read_bytes()).hexdigest()
    write_rows(root, rows)
    return root


def write_rows(root: Path, rows: list[dict], fields: list[str] | None = None) -> None:
    fields = fields or list(rows[0])
    with (root / MANIFEST_NAME).open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return add_file_sha256(make_dataset(tmp_path_factory.mktemp("ds") / "data", {"train": 3, "val": 2, "test": 2},
                                        size=32))


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """An untrained cnn: enough for evaluate, gradcam and predict to write their files."""
    from cxrtool.artifact import ModelInfo, save_model
    from cxrtool.models import build_model

    path = tmp_path_factory.mktemp("models") / "tiny.keras"
    return save_model(build_model("cnn", image_size=24, weights="none", seed=0), path,
                      ModelInfo("cnn", image_size=24, gradcam_layer="feature_map"))


@pytest.fixture(scope="module")
def flat_model(tmp_path_factory) -> Path:
    """A cnn whose logits ignore the features (zero kernel): every Grad-CAM map is all zero,
    as for an untrained or collapsed model."""
    from cxrtool.artifact import ModelInfo, save_model
    from cxrtool.models import build_model
    from cxrtool.models.names import LOGITS_LAYER

    m = build_model("cnn", image_size=24, weights="none", seed=0)
    layer = m.get_layer(LOGITS_LAYER)
    layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])
    path = tmp_path_factory.mktemp("flat") / "flat.keras"
    return save_model(m, path, ModelInfo("cnn", image_size=24, gradcam_layer="feature_map"))


# ---------------------------------------------------------------------------------------
# write failures
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_build_dataset_write_failure_names_the_output_and_leaves_nothing(tmp_path, capsys, monkeypatch, code):
    from cxrtool.cli import main
    from cxrtool.synthetic import write_class_folders

    src = tmp_path / "src"
    write_class_folders(src, 4, size=48, seed=2)
    before = {p: p.read_bytes() for p in src.rglob("*") if p.is_file()}
    out_parent = tmp_path / "out"
    out_parent.mkdir()
    refused = fail_writes(monkeypatch, out_parent, code)
    assert main(["build-dataset", str(src), str(out_parent / "ds"), "--no-figures", "--workers", "1"]) == 1
    line = one_error(capsys)
    assert refused and line.startswith(f"error: {out_parent / 'ds'}: cannot write: {CAUSES[code]}"), line
    assert all_files(out_parent) == []  # no dataset, no hidden partial folder
    assert {p: p.read_bytes() for p in src.rglob("*") if p.is_file()} == before  # sources untouched


def test_build_dataset_on_a_real_full_file_system(tmp_path, capsys):
    """A 64 KiB tmpfs: the error names the dataset folder, not the source file being copied."""
    from cxrtool.cli import main
    from cxrtool.synthetic import write_class_folders

    mnt = tmp_path / "full"
    mnt.mkdir()
    if sys.platform != "linux" or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
                                                  capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root on Linux)")
    try:
        src = tmp_path / "src"
        write_class_folders(src, 6, size=160, seed=3)
        assert main(["build-dataset", str(src), str(mnt / "ds"), "--no-figures", "--workers", "1"]) == 1
        line = one_error(capsys)
        assert line.startswith(f"error: {mnt / 'ds'}: cannot write: no space left on the device"), line
        assert str(src) not in line
        assert all_files(mnt) == []
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_train_checkpoint_write_failure(data, tmp_path, capsys, monkeypatch):
    """best.weights.h5 cannot be written: one line naming it (no HDF5 dump), no .keras, no temp files."""
    from cxrtool.cli import main

    models = tmp_path / "models"
    refused = fail_writes(monkeypatch, models, errno.ENOSPC, name="best.weights.h5")
    code = main(["-q", "train", str(data), "--model", "cnn", "--image-size", "24", "--epochs", "1", "--batch-size", "4",
                 "--seed", "0", "--no-calibrate", "--out", str(models / "m.keras")])
    line = one_error(capsys)
    assert code == 1 and refused
    assert line == f"error: {models / 'm.run' / 'best.weights.h5'}: cannot write: no space left on the device", line
    assert not (models / "m.keras").exists() and hidden_files(models) == []
    assert not (models / "m.run" / "best.weights.h5").exists()


@pytest.mark.parametrize("command", ["calibrate", "ensemble"])
def test_calibrate_and_ensemble_write_failure_leave_the_old_model_whole(command, data, model, tmp_path, capsys,
                                                                        monkeypatch):
    """The model file cannot be written: one line naming it, exit 1, an existing file at that
    path untouched (calibrate replaces the model in place by default), no temporary files."""
    from cxrtool.cli import main

    models = tmp_path / "models"
    models.mkdir()
    target = models / "m.keras"
    shutil.copy(model, target)
    before = target.read_bytes()
    refused = fail_writes(monkeypatch, models, errno.ENOSPC, name=".tmp.keras")  # the temp file, not the lock
    if command == "calibrate":
        args = ["calibrate", str(target), "--data", str(data)]
    else:
        from cxrtool.artifact import ModelInfo, save_model
        from cxrtool.models import build_model

        other = save_model(build_model("cnn", image_size=24, weights="none", seed=1), tmp_path / "b.keras",
                           ModelInfo("cnn", image_size=24, gradcam_layer="feature_map"))
        members = [model, other]  # two different files (the same one twice is refused)
        args = ["ensemble", *map(str, members), "--data", str(data), "--out", str(target)]
    code = main(["-q", *args])
    line = one_error(capsys)
    assert code == 1 and refused
    assert line == f"error: {target}: cannot write: no space left on the device", line
    assert target.read_bytes() == before and hidden_files(models) == []


def test_train_model_write_failure_after_a_cache_write_failure(data, tmp_path, capsys, monkeypatch):
    """The dataset cache cannot be written (training goes on without it), then neither can the
    final .keras: one line naming the model file, nothing partial, the dataset untouched."""
    from cxrtool.cli import main

    work = tmp_path / "work"
    shutil.copytree(data, work)
    shutil.rmtree(work / ".cache", ignore_errors=True)
    models = tmp_path / "models"
    cache_refused = fail_writes(monkeypatch, work / ".cache", errno.EROFS)
    real_open = builtins.open  # now the patched one: chain a second rule for the model file
    model_refused = []

    def also_the_model(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and "w" in mode and ".m.keras." in os.fspath(file):
            model_refused.append(os.fspath(file))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", also_the_model)
    monkeypatch.setattr(io, "open", also_the_model)
    code = main(["-q", "train", str(work), "--model", "cnn", "--image-size", "24", "--epochs", "1", "--batch-size", "4",
                 "--seed", "0", "--no-calibrate", "--out", str(models / "m.keras")])
    line = one_error(capsys)
    assert code == 1 and cache_refused and model_refused
    assert line == f"error: {models / 'm.keras'}: cannot write: no space left on the device", line
    assert not (models / "m.keras").exists() and hidden_files(models) == []
    assert not list((work / ".cache").glob("*.npz"))  # no cache, and no half cache
    assert not list((work / ".cache").glob("*.npy")) and not list((work / ".cache").glob(".*"))


def test_evaluate_write_failure(data, model, tmp_path, capsys, monkeypatch):
    from cxrtool.cli import main

    out = tmp_path / "eval"
    # evaluate writes into a hidden sibling of OUT and moves the files in at the end: refuse
    # report.md wherever it is written under tmp_path
    refused = fail_writes(monkeypatch, tmp_path, errno.EROFS, name="report.md")
    code = main(["evaluate", str(data), "-m", str(model), "--out", str(out), "--bootstrap", "0"])
    line = one_error(capsys)
    assert code == 1 and refused
    assert line == f"error: {out / 'report.md'}: cannot write: read-only file system", line
    assert not (out / "report.md").exists() and not (out / "metrics.json").exists()
    assert hidden_files(tmp_path) == []  # no staging folder or temporary file left behind
    for name in all_files(out) if out.exists() else []:  # whatever was written before is whole
        if name.endswith(".json"):
            json.loads((out / name).read_text())


def test_gradcam_write_failure(data, model, tmp_path, capsys, monkeypatch):
    from cxrtool.cli import main

    images = sorted((data / "test").rglob("*.png"))[:3]
    out = tmp_path / "cams"
    refused = fail_writes(monkeypatch, out, errno.ENOSPC)
    code = main(["gradcam", *map(str, images), "--model", str(model), "--out", str(out)])
    out_text, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 1 and refused and out_text == ""
    assert len(lines) == 1 and lines[0].startswith(f"error: {out}/") and lines[0].endswith(
        "cannot write: no space left on the device"), err
    assert all_files(out) == []


def test_write_cause_tells_reads_from_writes(tmp_path):
    """Permission denied on a source being read is not a write error; on the destination it is."""
    from cxrtool.atomic import atomic_dir, write_cause
    from cxrtool.errors import WriteError

    src, dest = tmp_path / "src" / "a.png", tmp_path / "out"
    read_err = OSError(errno.EACCES, "Permission denied", str(src))
    assert write_cause(read_err, (dest,)) is None
    assert write_cause(OSError(errno.EACCES, "Permission denied", str(dest / "x")), (dest,)) == "permission denied"
    assert write_cause(OSError(errno.ENOSPC, "No space", str(src), None, str(dest / "x"))) == "no space left on the device"
    with pytest.raises(PermissionError):  # passes through unchanged
        with atomic_dir(dest):
            raise read_err.__class__(errno.EACCES, "Permission denied", str(src))
    with pytest.raises(WriteError, match=r"out: cannot write: no space left on the device \(while writing b/c.png\)"):
        with atomic_dir(dest) as tmp:
            # as shutil.copyfile raises it: the SOURCE in filename, the destination in filename2
            raise OSError(errno.ENOSPC, "No space left on device", str(src), None, str(tmp / "b" / "c.png"))
    assert all_files(tmp_path) == []


# ---------------------------------------------------------------------------------------
# hostile dataset folders
# ---------------------------------------------------------------------------------------


def _hostile(root: Path, case: str, outside: Path) -> int:
    """Damage ROOT's manifest as CASE says; returns the line the error must name (0: none)."""
    rows = read_rows(root)
    fields = list(rows[0])
    line = 4  # the third row
    if case == "absolute":
        rows[2]["file"] = str(outside)
    elif case == "dotdot":
        rows[2]["file"] = "../outside/" + outside.name
    elif case == "symlink":
        (root / "train" / "link.png").symlink_to(outside)
        rows[2]["file"] = "train/link.png"
    elif case == "symlinked-folder":
        (root / "elsewhere").symlink_to(outside.parent, target_is_directory=True)
        rows[2]["file"] = "elsewhere/" + outside.name
    elif case == "label":
        rows[2]["label"] = "cat"
    elif case == "split":
        rows[2]["split"] = "holdout"
    elif case == "duplicate":
        rows[2]["file"] = rows[0]["file"]
    elif case == "missing-column":
        fields.remove("split")
        line = 1
    elif case == "ragged":
        write_rows(root, rows, fields)
        text = (root / MANIFEST_NAME).read_text().splitlines()
        text[3] = ",".join(text[3].split(",")[:3])
        (root / MANIFEST_NAME).write_text("\n".join(text) + "\n")
        return line
    elif case == "not-utf8":
        rows[2]["source"] = "site"
        write_rows(root, rows, fields)
        raw = (root / MANIFEST_NAME).read_bytes().replace(b",site,", b",s\xe9te,", 1)
        (root / MANIFEST_NAME).write_bytes(raw)
        return line
    elif case == "empty":
        (root / MANIFEST_NAME).write_bytes(b"")
        return 0
    elif case == "header-only":
        rows = rows[:0]
        (root / MANIFEST_NAME).write_text(",".join(fields) + "\n")
        return 0
    write_rows(root, [{k: r.get(k, "") for k in fields} for r in rows], fields)
    return line


HOSTILE = {
    "absolute": "is not a relative path inside the dataset folder",
    "dotdot": "leaves the dataset folder ('..')",
    "symlink": "resolves outside the dataset folder",
    "symlinked-folder": "resolves outside the dataset folder",
    "label": "unknown label 'cat'",
    "split": "unknown split 'holdout'",
    "duplicate": "is listed twice (first on line 2)",
    "missing-column": "missing column split",
    "ragged": "columns in the header but not in this row",
    "not-utf8": "not UTF-8 text (byte 0xe9)",
    "empty": "empty file",
    "header-only": "lists no images",
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_manifest_is_one_error_naming_the_row(tmp_path, case):
    from cxrtool.manifest import read_manifest

    root = make_dataset(tmp_path / "d", {"train": 2, "val": 1}, size=20)
    outside = tmp_path / "outside" / "secret.png"
    outside.parent.mkdir()
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(outside)
    line = _hostile(root, case, outside)
    where = f"{root / MANIFEST_NAME}:{line}: " if line else f"{root / MANIFEST_NAME}: "
    with pytest.raises(DatasetError) as exc:
        read_manifest(root)
    assert str(exc.value).startswith(where) and HOSTILE[case] in str(exc.value), str(exc.value)


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_a_row_outside_the_folder_stops_the_command_before_any_image_is_read(tmp_path, capsys, monkeypatch, model,
                                                                             command):
    from cxrtool.cli import main

    root = make_dataset(tmp_path / "d", {"train": 2, "val": 1, "test": 1}, size=20)
    outside = tmp_path / "outside" / "secret.png"
    outside.parent.mkdir()
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(outside)
    _hostile(root, "dotdot", outside)
    opened = []  # every open of the outside file, whoever opens it (Pillow, pathlib, numpy)
    real_open = builtins.open

    def watching_open(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and os.path.abspath(os.fspath(file)).startswith(str(outside.parent)):
            opened.append(file)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", watching_open)
    monkeypatch.setattr(io, "open", watching_open)
    args = (["train", str(root), "--model", "cnn", "--models-dir", str(tmp_path / "models")] if command == "train"
            else ["evaluate", str(root), "-m", str(model), "--out", str(tmp_path / "eval")])
    assert main(args) == 1
    line = one_error(capsys)
    assert line == f"error: {root / MANIFEST_NAME}:4: file '../outside/secret.png' leaves the dataset folder ('..')"
    assert opened == [] and not (tmp_path / "models").exists() and not (tmp_path / "eval").exists()


def test_verify_checks_every_file_against_the_manifest(data, model, tmp_path, capsys):
    from cxrtool.cli import main
    from cxrtool.manifest import verify_dataset

    assert verify_dataset(data) == len(read_rows(data))
    work = tmp_path / "work"
    shutil.copytree(data, work)
    rows = read_rows(work)
    victim = next(i for i, r in enumerate(rows) if r["split"] == "val")
    (work / rows[victim]["file"]).write_bytes((work / rows[victim]["file"]).read_bytes() + b"\0")
    for args in (["train", str(work), "--model", "cnn", "--models-dir", str(tmp_path / "m"), "--verify"],
                 ["calibrate", str(model), "--data", str(work), "--out", str(tmp_path / "c.keras"), "--verify"],
                 ["evaluate", str(work), "-m", str(model), "--split", "val", "--out", str(tmp_path / "e"), "--verify"]):
        assert main(args) == 1, args
        line = one_error(capsys)
        assert line == (f"error: {work / MANIFEST_NAME}:{victim + 2}: {rows[victim]['file']}: its bytes differ from "
                        "the manifest's SHA-256 (changed since build-dataset)"), line
    assert not any((tmp_path / n).exists() for n in ("m", "c.keras", "e"))
    # a manifest from before the column: a clear message
    write_rows(work, [{k: v for k, v in r.items() if k != FILE_SHA256} for r in rows])
    assert main(["evaluate", str(work), "-m", str(model), "--out", str(tmp_path / "e"), "--verify"]) == 1
    assert "no file_sha256 column (written by an older cxrtool)" in one_error(capsys)
    (tmp_path / "folders" / "covid").mkdir(parents=True)  # class folders: nothing to verify against
    assert main(["evaluate", str(tmp_path / "folders"), "-m", str(model), "--verify"]) == 2
    assert "has none" in one_error(capsys)


def test_verify_passes_on_a_good_dataset_through_the_cli(data, model, tmp_path, capsys):
    from cxrtool.cli import main

    out = tmp_path / "eval"
    assert main(["evaluate", str(data), "-m", str(model), "--out", str(out), "--bootstrap", "0", "--verify"]) == 0
    err = " ".join(capsys.readouterr().err.split())  # rich wraps long lines
    n = sum(r["split"] == "test" for r in read_rows(data))
    assert f"verified {n} files of the test split against {data / MANIFEST_NAME}" in err
    assert (out / "metrics.json").is_file()


@pytest.mark.parametrize("mode", ["copy", "png"])
def test_build_dataset_writes_file_sha256_that_verifies(tmp_path, mode):
    from cxrtool.build import BuildOptions, build_dataset
    from cxrtool.manifest import verify_dataset
    from cxrtool.synthetic import write_class_folders

    src = tmp_path / "src"
    write_class_folders(src, 8, size=64, seed=4, fmt="jpeg")
    build_dataset([src], tmp_path / "ds", BuildOptions(mode=mode, figures=False, workers=1))
    rows = read_rows(tmp_path / "ds")
    assert verify_dataset(tmp_path / "ds") == len(rows) > 0
    assert all((r["sha256"] == r[FILE_SHA256]) == (mode == "copy") for r in rows)


# ---------------------------------------------------------------------------------------
# hostile model files
# ---------------------------------------------------------------------------------------


def _rewrite(src: Path, dst: Path, mutate=None, extra=()) -> Path:
    """Copy a .keras archive, changing its cxrtool metadata with MUTATE(dict) and adding EXTRA members."""
    from cxrtool.models.names import INFO_LAYER

    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "config.json" and mutate is not None:
                config = json.loads(data)

                def walk(node):
                    if isinstance(node, dict):
                        if node.get("name") == INFO_LAYER and "info" in node:
                            info = json.loads(node["info"])
                            mutate(info)
                            node["info"] = json.dumps(info)
                        for v in node.values():
                            walk(v)
                    elif isinstance(node, list):
                        for v in node:
                            walk(v)

                walk(config)
                data = json.dumps(config).encode()
            zout.writestr(item, data)
        for name, payload in extra:
            zout.writestr(name, payload)
    return dst


def _declare_size(path: Path, member: str, size: int) -> None:
    """Make the central directory claim SIZE uncompressed bytes for MEMBER (a lying header)."""
    raw = bytearray(path.read_bytes())
    pos = raw.find(b"PK\x01\x02")
    while pos >= 0:
        name_len = int.from_bytes(raw[pos + 28 : pos + 30], "little")
        if raw[pos + 46 : pos + 46 + name_len].decode(errors="replace") == member:
            raw[pos + 24 : pos + 28] = size.to_bytes(4, "little")
        pos = raw.find(b"PK\x01\x02", pos + 4)
    path.write_bytes(bytes(raw))


def test_hostile_model_archives_are_refused_before_keras(model, tmp_path, capsys):
    from cxrtool.artifact import read_info
    from cxrtool.cli import main

    bomb = _rewrite(model, tmp_path / "bomb.keras", extra=[("assets/zeros.bin", b"\0" * (80 * 1024**2))])
    assert bomb.stat().st_size < model.stat().st_size + 1024**2  # 80 MiB of zeros in < 1 MiB
    lying = _rewrite(model, tmp_path / "lying.keras", extra=[("a.bin", b"x"), ("b.bin", b"y")])
    _declare_size(lying, "a.bin", 3 * 1024**3)
    _declare_size(lying, "b.bin", 3 * 1024**3)
    cat = _rewrite(model, tmp_path / "cat.keras", lambda i: i.update(classes=["covid", "cat", "normal"]))
    twice = _rewrite(model, tmp_path / "twice.keras", lambda i: i.update(classes=["covid", "covid", "normal"]))
    members = [{"name": "a", "layer": "member_0", "classes": ["covid", "pneumonia", "normal"], "weight": 0.5},
               {"name": "b", "layer": "member_1", "classes": ["normal", "pneumonia", "covid"], "weight": 0.5}]
    ens = _rewrite(model, tmp_path / "ens.keras",
                   lambda i: i.update(architecture="ensemble", extra={"method": "mean", "members": members}))
    expected = {
        bomb: "refused: assets/zeros.bin expands",
        lying: "refused: the archive expands to 6.0 GiB",
        cat: "the metadata names class 'cat'; a cxrtool model predicts covid, pneumonia, normal",
        twice: "the metadata names a class twice",
        ens: "ensemble member b predicts normal, pneumonia, covid but the ensemble predicts covid, pneumonia, normal",
    }
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((24, 24), np.uint8)).save(image)
    for path, message in expected.items():
        with pytest.raises(ModelFormatError) as exc:
            read_info(path)
        assert str(exc.value).startswith(f"{path}: ") and message in str(exc.value), str(exc.value)
        assert main(["predict", str(image), "--model", str(path)]) == 1
        assert message in one_error(capsys)


# ---------------------------------------------------------------------------------------
# degenerate heat maps
# ---------------------------------------------------------------------------------------


def test_flat_heat_map_is_reported_not_painted(flat_model, data, tmp_path, capsys):
    from cxrtool.cli import main
    from cxrtool.imageio import load_image

    images = sorted((data / "test").rglob("*.png"))[:2]
    out = tmp_path / "cams"
    assert main(["gradcam", *map(str, images), "--model", str(flat_model), "--out", str(out), "--save-raw"]) == 0
    stdout, err = capsys.readouterr()
    lines = [line.split("\t") for line in stdout.splitlines()]
    # the fifth field lists the notes, comma-separated (an untrained model may also flag the input)
    assert [len(f) for f in lines] == [5, 5] and all("flat" in f[4].split(",") for f in lines), stdout
    assert "2 of 2 heat maps are flat" in err
    for fields, path in zip(lines, images):
        overlay = np.asarray(Image.open(fields[3]).convert("RGB")).astype(int)
        gray = load_image(path)
        scale = overlay.shape[0] // gray.shape[0]
        h = overlay.shape[0]  # below the caption box, above a FLAGGED band (an untrained model may flag)
        body = overlay[h // 2 : 3 * h // 4, : gray.shape[1] * scale]
        assert np.array_equal(body[..., 0], body[..., 1]) and np.array_equal(body[..., 1], body[..., 2])  # no colour
        assert np.load(Path(fields[3]).with_suffix(".npy")).max() == 0.0


def test_flatness_rule():
    from cxrtool.gradcam.overlay import is_flat

    assert is_flat(np.zeros((4, 4))) and is_flat(np.ones((4, 4))) and is_flat(np.full((4, 4), 0.995) + np.eye(4) * 0.005)
    assert is_flat(np.full((4, 4), np.nan)) and is_flat(np.zeros((0, 0)))
    assert not is_flat(np.linspace(0, 1, 16).reshape(4, 4)) and not is_flat(np.full((4, 4), 0.9) + np.eye(4) * 0.1)


def test_evaluate_attention_leaves_flat_maps_out(flat_model, data, tmp_path, capsys):
    from cxrtool.cli import main

    out = tmp_path / "eval"
    assert main(["evaluate", str(data), "-m", str(flat_model), "--out", str(out), "--bootstrap", "0",
                 "--attention", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    (section,) = doc["attention"]["models"].values()
    n = sum(r["split"] == "test" for r in read_rows(data))
    assert section["no_heat"] == n and section["overall"]["n"] == 0


# ---------------------------------------------------------------------------------------
# stdout carries results only
# ---------------------------------------------------------------------------------------


def test_chatter_written_to_descriptor_1_goes_to_stderr():
    """What gloo does from C++ (write(1, ...)) inside stdout_to_stderr lands on stderr."""
    code = ("import os\nfrom cxrtool.train.distribute import stdout_to_stderr\n"
            "print('before', flush=True)\n"
            "with stdout_to_stderr():\n    os.write(1, b'[Gloo] Rank 0 is connected\\n')\n    print('py chatter')\n"
            "print('result')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=Path(__file__).parent.parent)
    assert proc.stdout == "before\nresult\n"
    assert "[Gloo] Rank 0 is connected" in proc.stderr and "py chatter" in proc.stderr


def test_two_process_distributed_start_keeps_stdout_clean(tmp_path):
    """Two local CPU processes start the distributed runtime as `train` does: stdout stays empty."""
    import socket

    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    code = ("import sys\nfrom cxrtool.backend import import_keras\nfrom cxrtool.train import TrainOptions\n"
            "from cxrtool.train.distribute import setup_distribution\n"
            f"o = TrainOptions(coordinator='localhost:{port}', num_processes=2, process_id=int(sys.argv[1]))\n"
            "topo = setup_distribution(import_keras(), o, 8)\nassert topo.processes == 2\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(i)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for i in range(2)]
    try:
        results = [p.communicate(timeout=120) for p in procs]
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        pytest.skip("the two processes did not connect within 120 s (no local networking?)")
    if any(p.returncode for p in procs):
        pytest.skip(f"the distributed runtime did not start here: {results[0][1][-300:]}")
    assert [out for out, _ in results] == ["", ""]
