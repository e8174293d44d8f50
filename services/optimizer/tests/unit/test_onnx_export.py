"""The ONNX graph is exported once, kept under a key of what made it, and workers load it without torch."""

from __future__ import annotations

import json
import shutil
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


def test_the_int8_graph_is_a_file_of_its_own_named_by_its_quantiser_too(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"weights")
    float32, int8 = onnx_export.graph_path(model, tmp_path), onnx_export.graph_path(model, tmp_path, int8=True)
    assert int8.name.endswith(".int8.onnx") and int8 != float32
    versions = {"onnxruntime": "1.0"}
    monkeypatch.setattr(onnx_export, "_version", lambda name: versions.get(name, "9"))
    before = onnx_export.graph_path(model, tmp_path), onnx_export.graph_path(model, tmp_path, int8=True)
    versions["onnxruntime"] = "2.0"  # a new quantiser: a new int8 graph, the same float one
    assert onnx_export.graph_path(model, tmp_path) == before[0]
    assert onnx_export.graph_path(model, tmp_path, int8=True) != before[1]


def test_the_int8_graph_is_the_float_graph_with_int8_weight_matrices(tmp_path: Path) -> None:
    import onnx

    from orqen_optimizer.embeddings import model_path

    model = model_path()
    float32 = onnx_export.graph_path(model, tmp_path)
    shutil.copyfile(onnx_export.ensure_graph(model, onnx_export.cache_dir()), float32)  # not exported again
    int8 = onnx_export.ensure_graph(model, tmp_path, int8=True)
    assert int8.parent == tmp_path and not list(tmp_path.glob(".*.tmp"))
    operators = {node.op_type for node in onnx.load(str(int8)).graph.node}
    assert {"MatMulInteger", "DynamicQuantizeLinear"} <= operators
    assert int8.stat().st_size < 0.7 * float32.stat().st_size


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


def test_the_word_table_is_the_float_graphs_word_piece_embeddings_read_once(tmp_path: Path) -> None:
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from orqen_optimizer.embeddings import DIMENSIONS, model_path

    model = model_path()
    float32 = onnx_export.graph_path(model, tmp_path)
    shutil.copyfile(onnx_export.ensure_graph(model, onnx_export.cache_dir()), float32)  # not exported again
    path = onnx_export.ensure_word_table(model, tmp_path)
    assert path.parent == tmp_path and path.name.startswith(float32.stem) and not list(tmp_path.glob(".*.tmp"))
    table = np.load(path)
    graph = {t.name: t for t in onnx.load(str(float32)).graph.initializer}
    expected = numpy_helper.to_array(next(t for name, t in graph.items() if name.endswith("word_embeddings.weight")))
    assert table.shape == (30522, DIMENSIONS) and np.array_equal(table, expected)
    made = path.stat().st_mtime_ns
    assert onnx_export.ensure_word_table(model, tmp_path) == path and path.stat().st_mtime_ns == made
