"""The console transcripts the docs include are what running them prints today.

`python -m toolcatalog_dev.transcripts` (make transcripts) runs the tutorial's commands against the
sandbox, as a newcomer would: on the emulator backend the quick start (docs/transcripts/quickstart-*),
on the real control plane the real sandbox's tutorial (docs/transcripts/real-*). Each fresh transcript
must have the shape of the committed one: the same commands, tool names, counts, results and
messages; only times, ages, hashes, tokens, ports, pids and paths may differ.
"""

from __future__ import annotations

import difflib
import shutil
from pathlib import Path

import pytest

from toolcatalog_dev import transcripts

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "docs" / "transcripts"


def _kubectl_available() -> bool:
    built = transcripts.kubectl_dir()
    return built is not None or shutil.which("kubectl") is not None


def _compare(fresh_dir: Path, prefix: str) -> list[str]:
    problems = []
    committed = sorted(COMMITTED.glob(f"{prefix}*.txt"))
    fresh = sorted(fresh_dir.glob(f"{prefix}*.txt"))
    assert [p.name for p in fresh] == [p.name for p in committed], "the set of transcripts changed"
    for old, new in zip(committed, fresh, strict=True):
        before, after = transcripts.shape(old.read_text()), transcripts.shape(new.read_text())
        if before != after:
            diff = difflib.unified_diff(before.splitlines(), after.splitlines(), f"committed {old.name}",
                                        f"fresh {new.name}", lineterm="", n=1)
            problems.append("\n".join(list(diff)[:40]))
    return problems


@pytest.mark.e2e
@pytest.mark.timeout(400)
def test_the_docs_transcripts_are_what_the_sandbox_prints(backend, tmp_path):
    if not _kubectl_available():
        pytest.fail("the transcripts need kubectl: `make controlplane` builds it (or put one on PATH)")
    real = backend == "cluster"
    work = tmp_path / "work"
    work.mkdir()
    written = transcripts.produce(real, tmp_path / "out", work)
    assert written
    problems = _compare(tmp_path / "out", "real-" if real else "quickstart-")
    assert not problems, ("the docs' transcripts no longer match what the commands print: check the change, then "
                          f"`make transcripts{' TRANSCRIPT_ARGS=--real' if real else ''}` and commit "
                          "docs/transcripts/\n\n" + "\n\n".join(problems))


def test_shape_keeps_what_a_reader_relies_on_and_drops_what_varies():
    one = ("default     mcpts/demo   True    True     5       -         1s          1s\n"
           "toolserver/demo refresh requested (token 2026-12-06T09:04:07.367392Z-164a02)\n"
           "+++ list_tasks current sha256:" + "a" * 64 + "\n"
           "==> the demo MCP server (tasks-demo) serves 7 tools at http://127.0.0.1:8765/mcp\n")
    two = ("default   mcpts/demo   True   True   5   -   12s   12s\n"
           "toolserver/demo refresh requested (token 2026-12-07T10:00:00.000001Z-abcdef)\n"
           "+++ list_tasks current sha256:" + "b" * 64 + "\n"
           "==> the demo MCP server (tasks-demo) serves 7 tools at http://127.0.0.1:40001/mcp\n")
    assert transcripts.shape(one) == transcripts.shape(two)
    assert transcripts.shape(one) != transcripts.shape(one.replace("True     5", "True     4"))
    assert transcripts.shape(one) != transcripts.shape(one.replace("list_tasks", "assign_task"))
