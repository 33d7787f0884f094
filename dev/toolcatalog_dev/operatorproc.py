"""The operator as users run it (`toolcatalog run`), as a child process: for the tests, the demo and the
benchmarks. Its whole log goes to a file, for assertions and for the tail printed when something fails.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

STOP_TIMEOUT = 15.0


def operator_command() -> list[str]:
    """`toolcatalog run`: the console script next to this Python, else `python -m toolcatalog.cli`."""
    script = Path(sys.executable).parent / "toolcatalog"
    return [str(script)] if script.exists() else [sys.executable, "-m", "toolcatalog.cli"]


class OperatorProcess:
    """`toolcatalog run -A --standalone ARGS` in its own session (Ctrl-C reaches only its parent); with
    `namespaces`, `-n NS` for each instead of `-A`; with `command`, that instead of `operator_command()`."""

    def __init__(self, kubeconfig: Path, log_path: Path, env: Mapping[str, str] | None = None,
                 args: Sequence[str] = ("--verbose",), namespaces: Sequence[str] = (),
                 command: Sequence[str] | None = None) -> None:
        self.kubeconfig, self.log_path = kubeconfig, log_path
        self.env, self.args = dict(env or {}), list(args)
        self.command = list(command) if command is not None else operator_command()
        self.scope = [f"--namespace={namespace}" for namespace in namespaces] or ["-A"]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TOOLCATALOG_")}
        env.update({"KUBECONFIG": str(self.kubeconfig), "PYTHONUNBUFFERED": "1", **self.env})
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen([*self.command, "run", *self.scope, "--standalone", *self.args],
                                            env=env, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        return self

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def exited(self) -> int | None:
        """The exit status if it has ended, else None."""
        return None if self.process is None else self.process.poll()

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM to its process group, a bounded wait, then SIGKILL; returns the exit status."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        return self.process.returncode

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:]) or "(no log)"
