"""Schemathesis against the running edge's own OpenAPI document: every operation, with a valid API
key and without one. No answer may be a 5xx, and every answer must be one the document describes
(status, content type and body schema)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from accounts import new_account_key

# The checks the document must pass; the others (e.g. that every valid body is accepted) are not
# the document's promise: a valid-looking body can still name a model nobody serves.
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
# Bounded so the whole run stays around a minute on two cores.
MAX_EXAMPLES = 5


@pytest.fixture(scope="module")
async def fuzz_key(stack: Any) -> str:
    # An account of its own: the fuzzer creates keys, saves credentials and changes preferences.
    return await new_account_key(stack, "fuzz-openapi")


def run_schemathesis(stack: Any, tmp_path: Path, *headers: str) -> subprocess.CompletedProcess[str]:
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        f"{stack.info.edge_url}/schema/openapi.json",
        f"--checks={CHECKS}",
        f"--max-examples={MAX_EXAMPLES}",
        "--seed=17",
        "--phases=examples,coverage,fuzzing",
        # One worker: Hypothesis describes strategies with ast.parse, which is not thread-safe on Python 3.11.
        "--workers=1",
        "--request-timeout=30",
        "--suppress-health-check=all",
        f"--report-dir={tmp_path}",
        "--no-color",
        *(f"--header={header}" for header in headers),
    ]
    # Run in the test's own folder: Schemathesis keeps a cache of past failures in its working directory.
    return subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path, check=False)


@pytest.mark.parametrize("authenticated", [True, False], ids=["with-key", "without-key"])
async def test_every_operation_answers_as_the_document_says(
    stack: Any, fuzz_key: str, tmp_path: Path, authenticated: bool
) -> None:
    headers = [f"Authorization: Bearer {fuzz_key}"] if authenticated else []
    result = run_schemathesis(stack, tmp_path, *headers)
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-5000:]
