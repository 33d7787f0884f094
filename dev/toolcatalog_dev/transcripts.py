"""The console transcripts of the docs, produced by running them: `make transcripts` (TRANSCRIPT_ARGS=--real).

Starts `toolcatalog sandbox` as a newcomer would (the emulator; `--real`: the real control plane), runs
the tutorial's commands one after another in a shell with the printed KUBECONFIG, and writes what each
printed, stdout and stderr as a terminal interleaves them, into docs/transcripts/*.txt, which the
tutorials include (quickstart-*.txt from the emulator, real-*.txt from the real control plane).
Between commands it waits, with a deadline, for what a person would wait for (the operator to take
a spec change, the list-changed sync after a release), so the transcripts are what a user sees,
every time. The only edit: the clone's path reads `~/toolcatalog`, the home `~`.

tests/e2e/test_transcripts.py runs this again and compares each transcript's shape (times, ages,
hashes, tokens, ports, pids and paths normalised) with the committed one.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "docs" / "transcripts"
SHOWN_REPO = "~/toolcatalog"
START_TIMEOUT = {False: 150.0, True: 240.0}
STEP_TIMEOUT = 60.0
COMMAND_TIMEOUT = 120.0
POLICY_PATCH = """'{"spec":{"approval":{"policy":"NewAndChanged"}}}'"""


class TranscriptFailed(RuntimeError):
    pass


def kubectl_dir() -> Path | None:
    """The kubectl `make controlplane` builds (the version the tests use), else None (then PATH's)."""
    go_mod = (REPO / "test/controlplane/kubernetes/go.mod").read_text()
    version = next((line.split()[2] for line in go_mod.splitlines() if line.startswith("require k8s.io/kubernetes ")),
                   "")
    cache = Path(os.environ.get("TOOLCATALOG_CACHE") or Path.home() / ".cache" / "toolcatalog")
    built = cache / "controlplane" / version
    return built if (built / "kubectl").exists() else None


@dataclass
class Session:
    """A running sandbox and a shell environment pointed at it; `run` records each command's output."""

    real: bool
    process: subprocess.Popen[str] | None = None
    output_path: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    files: dict[str, list[str]] = field(default_factory=dict)

    # -- the sandbox --------------------------------------------------------------------------

    def start(self, workdir: Path) -> str:
        self.output_path = workdir / "sandbox.out"
        env = {k: v for k, v in os.environ.items() if not k.startswith("TOOLCATALOG_") and k != "KUBECONFIG"}
        env["PYTHONUNBUFFERED"] = "1"
        args = [str(Path(sys.executable).parent / "toolcatalog"), "sandbox", *(["--real"] if self.real else [])]
        with self.output_path.open("w") as out:
            self.process = subprocess.Popen(args, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                            stderr=subprocess.STDOUT, text=True)
        text = self._poll(lambda: self._banner(), START_TIMEOUT[self.real], "the sandbox to print its KUBECONFIG")
        kubeconfig = text.rstrip().splitlines()[-1].removeprefix("KUBECONFIG=")
        path = [str(Path(sys.executable).parent)]
        built = kubectl_dir()
        if built is not None:
            path.append(str(built))
        self.env = {**env, "KUBECONFIG": kubeconfig, "PATH": ":".join([*path, env.get("PATH", "")]),
                    "COLUMNS": "200"}
        return text

    def _banner(self) -> str | None:
        assert self.process is not None and self.output_path is not None
        text = self.output_path.read_text()
        if re.search(r"^KUBECONFIG=\S+$", text, re.MULTILINE):
            return text
        if self.process.poll() is not None:
            raise TranscriptFailed(f"the sandbox exited with {self.process.returncode}:\n{text}")
        return None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> str:
        """Ctrl-C, as a person stops it; what it prints from then on."""
        if self.process is None or self.output_path is None:
            return ""
        before = len(self.output_path.read_text())
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
                raise TranscriptFailed("the sandbox did not stop within 60 s of Ctrl-C") from None
        return self.output_path.read_text()[before:]

    # -- commands -----------------------------------------------------------------------------

    def run(self, transcript: str, command: str, *, shown: str | None = None, ok: tuple[int, ...] = (0,)) -> str:
        """Run `command` in bash; record `$ shown` (default: the command) and its output in `transcript`."""
        result = subprocess.run(["bash", "-c", command], cwd=REPO, env=self.env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                timeout=COMMAND_TIMEOUT, check=False)
        if result.returncode not in ok:
            raise TranscriptFailed(f"`{command}` exited {result.returncode}:\n{result.stdout}")
        self.record(transcript, f"$ {shown or command}\n{result.stdout}")
        return result.stdout

    def record(self, transcript: str, text: str) -> None:
        self.files.setdefault(transcript, []).append(text if text.endswith("\n") or not text else text + "\n")

    def get(self, resource: str) -> dict[str, Any]:
        result = subprocess.run(["kubectl", "get", resource, "-o", "json"], cwd=REPO, env=self.env,
                                capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=True)
        return dict(json.loads(result.stdout))

    def wait(self, check: Callable[[dict[str, Any]], bool], what: str, resource: str = "toolserver/demo") -> None:
        self._poll(lambda: check(self.get(resource)), STEP_TIMEOUT, what)

    def _poll(self, check: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TranscriptFailed(f"timed out after {timeout:g}s waiting for {what}")
            time.sleep(0.2)


def _condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((cond for cond in (obj.get("status") or {}).get("conditions") or [] if cond.get("type") == type_),
                {})


def _caught_up(obj: dict[str, Any]) -> bool:
    """The operator has answered the object's latest spec."""
    status = obj.get("status") or {}
    return status.get("observedGeneration") == obj["metadata"].get("generation")


def quick_start(session: Session) -> None:
    """docs/tutorials/quickstart.md: from the sample's first sync to an approved, refreshed catalog."""
    session.run("quickstart-look", "kubectl get toolcatalog -A")
    session.run("quickstart-look", "kubectl toolcatalog status -A")
    session.run("quickstart-look", "kubectl toolcatalog tools toolserver/demo")
    session.run("quickstart-policy", f"kubectl patch toolserver demo --type=merge -p {POLICY_PATCH}")
    session.wait(lambda obj: _caught_up(obj) and bool(_condition(obj, "Approved")),
                 "the operator to take the approval policy")
    os.kill(session.pid, signal.SIGUSR1)
    session.record("quickstart-policy", f"$ kill -USR1 {session.pid}          # the demo MCP server ships its next "
                                        "release\n")
    session.wait(lambda obj: obj["status"]["lastSync"]["trigger"] == "list-changed",
                 "the sync the server's list-changed notification causes")
    session.run("quickstart-refresh", 'kubectl toolcatalog refresh toolserver/demo --force --reason "tasks-demo 1.1" '
                                      "--wait")
    session.run("quickstart-what-changed", "kubectl get events --field-selector reason=ToolsChanged "
                                           "-o custom-columns=TYPE:.type,REASON:.reason,MESSAGE:.message")
    session.run("quickstart-review", "kubectl toolcatalog status -A")
    session.run("quickstart-review", "kubectl toolcatalog diff toolserver/demo list_tasks", ok=(1,))
    session.run("quickstart-approve", "kubectl toolcatalog approve toolserver/demo --all-pending")
    session.wait(lambda obj: _caught_up(obj) and _condition(obj, "Approved").get("status") == "True",
                 "the operator to apply the approvals")
    session.run("quickstart-approve", "kubectl toolcatalog tools toolserver/demo")


def real_control_plane(session: Session) -> None:
    """docs/tutorials/real-control-plane.md: what the real API server adds."""
    session.run("real-look", "kubectl get toolcatalog -A")
    session.run("real-look", "kubectl get toolserver demo -o wide")
    session.run("real-rbac", "kubectl auth can-i patch toolservers --subresource=status "
                             "--as=system:serviceaccount:toolcatalog-system:toolcatalog -n default")
    session.run("real-rbac", "kubectl auth can-i patch toolservers "
                             "--as=system:serviceaccount:toolcatalog-system:toolcatalog -n default", ok=(1,))
    session.run("real-admission", "kubectl patch toolserver demo --type=merge -p "
                                  """'{"spec":{"sync":{"ttlSeconds":0}}}'""", ok=(1,))
    os.kill(session.pid, signal.SIGUSR1)
    session.record("real-release", f"$ kill -USR1 {session.pid}          # the demo MCP server ships its next "
                                   "release\n")
    session.wait(lambda obj: obj["status"]["lastSync"]["trigger"] == "list-changed",
                 "the sync the server's list-changed notification causes")
    session.run("real-release", "kubectl get events --field-selector reason=ToolsChanged")
    session.run("real-release", "kubectl get configmap toolserver-demo -o jsonpath="
                                "'{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}{\"\\n\"}'")


def write(session: Session, out: Path, banner: str, stop: str) -> list[Path]:
    prefix = "real-" if session.real else "quickstart-"
    make = "make sandbox SANDBOX_ARGS=--real" if session.real else "make sandbox"
    args = " --real" if session.real else ""
    files = {f"{prefix}sandbox": f"$ {make}\n.venv/bin/toolcatalog sandbox{args}\n{banner}",
             **{name: "".join(parts) for name, parts in session.files.items()},
             f"{prefix}stop": f"^C\n{stop}"}
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in files.items():
        path = out / f"{name}.txt"
        path.write_text(shown(text))
        written.append(path)
    return written


def shown(text: str) -> str:
    """The clone's path as `~/toolcatalog`, the home directory as `~`: the rest is as printed."""
    return text.replace(str(REPO), SHOWN_REPO).replace(str(Path.home()) + "/", "~/")


def produce(real: bool, out: Path, workdir: Path) -> list[Path]:
    session = Session(real)
    try:
        banner = session.start(workdir)
        (real_control_plane if real else quick_start)(session)
    finally:
        stop = session.stop()
    return write(session, out, banner, stop)


# ------------------------------------------------------------------------------------- shape


_SHAPES = [
    (re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z(-[0-9a-f]{6,16})?"), "<time>"),
    (re.compile(r"\b[A-Z][a-z]{2} [A-Z][a-z]{2} +\d+ \d\d:\d\d:\d\d \d{4}\b"), "<time>"),
    (re.compile(r"sha256:[0-9a-f]{64}"), "sha256:<hash>"),
    (re.compile(r"(127\.0\.0\.1|localhost):\d+"), r"\1:<port>"),
    (re.compile(r"/tmp/toolcatalog-[\w.-]+"), "<tmp>"),
    (re.compile(r"\[controlplane \d\d:\d\d:\d\d\]"), "[controlplane <clock>]"),
    (re.compile(r"(kill -\w+) \d+"), r"\1 <pid>"),
    (re.compile(r"\bdemo\.[0-9a-f]+\b"), "demo.<id>"),
    (re.compile(r"(?<![\w.])\d+(\.\d+)?(ms| ms| s|s|m|h|d)\b"), "<duration>"),
    (re.compile(r"v\d+\.\d+\.\d+"), "<version>"),
    (re.compile(r"/\S*/\.venv/bin"), "<venv>/bin"),
    (re.compile(r"[ \t]+"), " "),
]


def shape(text: str) -> str:
    """A transcript with what changes from run to run replaced: times, ages, durations, hashes, tokens, ports,
    pids, temporary paths and column padding. Tool names, counts, results and messages stay."""
    for pattern, replacement in _SHAPES:
        text = pattern.sub(replacement, text)
    return "\n".join(line.rstrip() for line in text.splitlines())


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m toolcatalog_dev.transcripts", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real", action="store_true", help="the real control plane's transcripts (make controlplane)")
    parser.add_argument("--out", type=Path, default=OUT, help="directory (default docs/transcripts)")
    args = parser.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory(prefix="toolcatalog-transcripts-") as workdir:
        try:
            written = produce(args.real, args.out, Path(workdir))
        except (TranscriptFailed, subprocess.SubprocessError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
    for path in written:
        print(f"wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
