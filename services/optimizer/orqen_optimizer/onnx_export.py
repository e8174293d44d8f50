"""The embedding model as ONNX graph files, exported once and kept in a cache directory.

Two graphs: the float32 transformer as exported, and its int8 form, which the workers run by
default for asks and tools alike (ORQEN_EMBEDDING_PRECISION; docs/performance.md, "The embedding
graph in int8"). The int8 graph is the float one with every weight matrix quantised per output
channel (ONNX Runtime's dynamic quantisation): about half the CPU per embedding, for vectors
within a few hundredths of cosine of float's.

Beside them, the model's input embedding table as a .npy file (orqen_optimizer.word_vectors).
`python -m orqen_optimizer.onnx_export [--cache-dir DIR]` makes sure all three are there and
prints their paths (the Dockerfile runs it at build time so containers never export). The export
itself runs here, in a process of its own: it imports torch and sentence-transformers (~8 s,
~800 MB), which an optimizer worker then never holds; workers load the files with onnxruntime alone.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import importlib.metadata
import io
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Where the graph is kept when neither the caller nor ORQEN_MODEL_CACHE_DIR says.
CACHE_DIR_VARIABLE = "ORQEN_MODEL_CACHE_DIR"
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# Bumped whenever _export changes what it writes: old files are then never read.
_FORMAT = "1"
# Whatever decides the graph's content besides the model files.
_EXPORTER_DISTRIBUTIONS = ("torch", "transformers", "sentence-transformers")
# ... and the int8 graph's: its quantiser.
_QUANTISER_DISTRIBUTIONS = ("onnxruntime",)


def cache_dir(configured: Path | None = None) -> Path:
    """`configured`, else ORQEN_MODEL_CACHE_DIR, else the user's cache directory (XDG)."""
    if configured is not None:
        return configured
    if os.environ.get(CACHE_DIR_VARIABLE):
        return Path(os.environ[CACHE_DIR_VARIABLE])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "orqen"


def graph_path(model: Path, directory: Path, int8: bool = False) -> Path:
    """The graph's file: named by the hash of the model's files and the exporter's versions.

    A new model package or a new torch (or, for the int8 graph, onnxruntime) never reads a
    graph another one wrote.
    """
    key = hashlib.sha256(_FORMAT.encode())
    for name in (*_EXPORTER_DISTRIBUTIONS, *(_QUANTISER_DISTRIBUTIONS if int8 else ())):
        key.update(f"\0{name}={_version(name)}".encode())
    for file in sorted(p for p in model.rglob("*") if p.is_file()):
        key.update(f"\0{file.relative_to(model).as_posix()}\0".encode())
        with file.open("rb") as content:
            key.update(hashlib.file_digest(content, "sha256").digest())
    return directory / f"all-MiniLM-L6-v2-{key.hexdigest()[:32]}{'.int8' if int8 else ''}.onnx"


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def ensure_graph(model: Path, directory: Path, int8: bool = False) -> Path:
    """The graph's path, exported (and for `int8` quantised from the float graph) first if it is missing.

    Concurrent callers (a group's workers, several stacks) take a file lock: one exports, the
    others wait and then read its file. The file appears by rename, complete or not at all.
    """
    path = graph_path(model, directory, int8)
    if path.exists():
        return path
    source = ensure_graph(model, directory) if int8 else None
    with _made_once(path) as missing:
        if missing:
            made_from = ["--quantise", str(source)] if source else ["--model", str(model)]
            done = subprocess.run(
                [sys.executable, "-m", "orqen_optimizer.onnx_export", "--write", str(path), *made_from],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                raise RuntimeError(f"exporting the embedding model to ONNX failed: {done.stderr.strip()[-2000:]}")
    return path


def ensure_word_table(model: Path, directory: Path) -> Path:
    """The model's input embedding table as a .npy file (a row per word piece), read from the float graph
    once (orqen_optimizer.word_vectors); its name is the float graph's, so a new model never reads an old one."""
    path = graph_path(model, directory).with_suffix(".words.npy")
    if path.exists():
        return path
    source = ensure_graph(model, directory)
    with _made_once(path) as missing:
        if missing:
            write_word_table(source, path)
    return path


def write_word_table(graph: Path, path: Path) -> None:
    """The float graph's word-piece embedding table, float32, to `path` atomically."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    initializers = onnx.load(str(graph)).graph.initializer
    table = next(numpy_helper.to_array(t) for t in initializers if t.name.endswith("word_embeddings.weight"))
    with _replacing(path) as partial, partial.open("wb") as out:
        np.save(out, table.astype(np.float32))


@contextlib.contextmanager
def _made_once(path: Path) -> Iterator[bool]:
    """Under `path`'s file lock (released when the file closes, or the process dies): whether `path` is
    still missing, for the one caller that then makes it while the others wait."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with (path.parent / f"{path.name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield not path.exists()


def write_graph(model: Path, path: Path) -> None:
    """Export the model's transformer to `path` atomically."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights are on disk: never ask the hub
    import torch  # slow imports: only this process pays them
    from sentence_transformers import SentenceTransformer

    source = SentenceTransformer(str(model), device="cpu")
    graph = _export(source[0].auto_model, torch)
    with _replacing(path) as partial:
        partial.write_bytes(graph)


def write_int8_graph(source: Path, path: Path) -> None:
    """`source`'s graph with its weight matrices in int8, per output channel, to `path` atomically.

    Only MatMuls with a weight are quantised (the attention's products of two activations stay
    float), with QInt8 weights and activations quantised per run: per channel keeps the ask
    vectors closest to float's of the variants measured (docs/performance.md).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _replacing(path) as partial:
        quantize_dynamic(
            source, partial, weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul"]
        )


@contextlib.contextmanager
def _replacing(path: Path) -> Iterator[Path]:
    """A temporary file beside `path` to write; synced and renamed to `path` when the block succeeds."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield partial
        with partial.open("rb+") as written:
            os.fsync(written.fileno())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _export(transformer: Any, torch: Any) -> bytes:
    """The transformer as an ONNX graph with dynamic batch and sequence axes."""

    class Hidden(torch.nn.Module):  # type: ignore[misc]  # the exporter wants positional tensors in, one tensor out
        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer.eval()

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.transformer(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    sample = torch.ones((1, 4), dtype=torch.long)
    graph = io.BytesIO()
    axes = {name: {0: "batch", 1: "sequence"} for name in (*INPUTS, "hidden")}
    # The tracer warns about values it records as constants (the attention mask is always
    # given; padding is handled by the mask): a test checks the vectors against PyTorch's.
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Hidden(), (sample, sample, torch.zeros_like(sample)), graph, input_names=list(INPUTS),
            output_names=["hidden"], dynamic_axes=axes, opset_version=17, dynamo=False,
        )  # fmt: skip
    return graph.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orqen_optimizer.onnx_export", description=__doc__)
    parser.add_argument("--cache-dir", type=Path, help=f"default: ${CACHE_DIR_VARIABLE}, else ~/.cache/orqen")
    # Internal: what ensure_graph runs in a child process.
    parser.add_argument("--write", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--quantise", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.write is not None:
        if args.quantise is not None:
            write_int8_graph(args.quantise, args.write)
        else:
            write_graph(args.model, args.write)
        return 0
    from orqen_optimizer.embeddings import model_path

    for int8 in (False, True):
        print(ensure_graph(model_path(), cache_dir(args.cache_dir), int8))
    print(ensure_word_table(model_path(), cache_dir(args.cache_dir)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
