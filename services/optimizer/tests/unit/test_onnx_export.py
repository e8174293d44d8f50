"""The ONNX graph is exported once, kept under a key of what made it, and workers load it without torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from orqen_optimizer import onnx_export


def test_the_graph_file_is_named_by_the_model_files_content(tmp_path: Path) -> None:
    model = tmp_path / "model"
    (model / "1_Pooling").mkdir(parents=True)
    (model / "model.safetensors").write_bytes(b"weights")
    (model / "1_Pooling" / "config.json").write_text("{}")
    first = onnx_export.graph_path(model, tmp_path / "cache")
    assert first == onnx_export.graph_path(model, tmp_path / "cache")
    assert first.parent == tmp_path / "cache" and first.suffix == ".onnx"
    (model / "model.safetensors").write_bytes(b"other weights")
    assert onnx_export.graph_path(model, tmp_path / "cache") != first


def test_an_existing_graph_is_used_as_it_is(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    path = onnx_export.graph_path(model, tmp_path / "cache")
    path.parent.mkdir()
    path.write_bytes(b"graph")  # not a real model: an export would replace it
    assert onnx_export.ensure_graph(model, tmp_path / "cache") == path
    assert path.read_bytes() == b"graph"


def test_the_cache_directory_setting_is_taken_first(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(onnx_export.CACHE_DIR_VARIABLE, str(tmp_path / "from-env"))
    assert onnx_export.cache_dir(tmp_path / "given") == tmp_path / "given"
    assert onnx_export.cache_dir() == tmp_path / "from-env"
    monkeypatch.delenv(onnx_export.CACHE_DIR_VARIABLE)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert onnx_export.cache_dir() == tmp_path / "xdg" / "orqen"


def test_a_process_that_embeds_never_imports_torch_or_sentence_transformers() -> None:
    child = (
        "import json, sys\n"
        "from orqen_optimizer.embeddings import embed\n"
        "embed(['warm up'])\n"
        "print(json.dumps(sorted(m for m in ('torch', 'sentence_transformers', 'transformers') if m in sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
