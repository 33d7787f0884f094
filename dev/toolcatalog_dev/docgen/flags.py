"""docs/reference/configuration.md: the flags of `toolcatalog run`, their environment variables and defaults.

Read from the parser cli.py builds, with no environment (so the defaults are OperatorConfig's, the
ones the code ships), and from the map of flags to environment variables it builds with it.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator

from toolcatalog.cli import build_parser, run_command

from .markdown import banner, code, prose, table


def help_text(action: argparse.Action, prog: str) -> str:
    text = action.help or ""
    if "%(" in text:
        text = text % {**vars(action), "prog": prog}
    return prose(text)


def shown_default(action: argparse.Action) -> str:
    value = action.default
    if isinstance(action, argparse._StoreTrueAction):
        return "off"
    if value is None or value == [] or value == ():
        return ""
    if isinstance(value, (tuple, list)):
        return code(",".join(str(item) for item in value))
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return code(value)


def flag(action: argparse.Action) -> str:
    metavar = action.metavar or (action.dest.upper() if action.nargs != 0 else "")
    if action.choices and not action.metavar:
        metavar = "|".join(str(choice) for choice in action.choices)
    names = ", ".join(code(f"{name} {metavar}".strip()) for name in action.option_strings)
    return names


def options(parser: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    """The parser's options, in their order, without --help."""
    for action in parser._actions:
        if action.option_strings and not isinstance(action, argparse._HelpAction) and action.help != argparse.SUPPRESS:
            yield action


def subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """Each subcommand: its name, its one-line help, its parser (argparse has no public way to list them)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return [(choice.dest, choice.help or "", action.choices[choice.dest])
                    for choice in action._choices_actions]
    return []


# The suffix cli.py's `documented` writes into a flag's help: the shipped default and the variable.
DOCUMENTED = re.compile(r"^(?P<text>.*) \(default (?P<default>.*); env (?P<env>TOOLCATALOG_\w+)\)$", re.S)


def run_row(action: argparse.Action, environment: dict[str, str]) -> tuple[str, str, str, str]:
    """One flag of `toolcatalog run`: the default and the variable from its help's suffix, where it has one
    (the parser's own default would be the environment's), in their own columns."""
    text = help_text(action, "toolcatalog run")
    if match := DOCUMENTED.match(text):
        assert environment.get(action.dest) == match["env"], f"{action.dest}: help names another variable"
        default = match["default"]
        return flag(action), code(match["env"]), default if " " in default else code(default), match["text"]
    return flag(action), "", shown_default(action), text


def render() -> str:
    run, environment = run_command(env={})
    rows = [run_row(action, environment) for action in options(run)]
    others = [command for command in subcommands(build_parser(env={})) if command[0] != "run"]
    out = [banner("operator/toolcatalog/cli.py (its parser) and config.py (OperatorConfig, the defaults)"),
           "# Configuration: `toolcatalog run`\n",
           "`toolcatalog run` is the operator (the image's command; `make run` runs it against the cluster in your "
           "KUBECONFIG). Its command line is parsed once into one settings object, `OperatorConfig` "
           "(`operator/toolcatalog/config.py`), which every part of the operator is given. A flag with an "
           "environment variable takes its default from it, for Deployments that prefer `env`; the flag wins when "
           "both are given. Nothing else is read from the environment.\n",
           "Without `-n`, the operator watches every namespace (`-A` says so explicitly). A default left blank is "
           "off, or none.\n",
           table(("Flag", "Environment variable", "Default", "Meaning"), rows),
           "Inside a pod the operator uses its ServiceAccount; elsewhere `KUBECONFIG` (or `~/.kube/config`). "
           "Kubeconfigs that need an exec plugin or an auth provider, and `--context`, need the official `kubernetes` "
           "client: `pip install 'toolcatalog[kubectl]'` (the kubectl plugin needs it too; the image has neither). "
           "Plain `http://` API servers on loopback work too.\n",
           "The [Helm chart](../how-to/install-helm.md) sets these through `extraArgs` and `extraEnv`; the "
           "manifests in `deploy/` set `--standalone`, the probes, `--metrics-port` and `--log-format json`.\n",
           "## How many syncs run at once\n",
           "`--max-concurrent-syncs N` is the number of workers: N reconciles start at once, one per resource at a "
           "time. A sync still running after 2 s (a server that answers slowly, or accepts and never answers, up to "
           "`--max-sync-timeout`) steps aside into the slow pool, so that its worker takes the next resource; the "
           "pool holds `--max-slow-syncs M` (by default `max(50, 5 × N)`), one namespace at most half of it. So at "
           "most **N + M** syncs run at once, N of them started in the last 2 s; when the pool is full, a worker "
           "waits for its own slow sync (backpressure). `--max-slow-syncs 0` makes N a strict bound: every sync "
           "holds its worker to the end, and hung servers can then hold every worker for up to "
           "`--max-sync-timeout`. The metrics show both: `toolcatalog_active_workers` of "
           "`toolcatalog_max_concurrent_reconciles`, `toolcatalog_slow_reconciles` of "
           "`toolcatalog_max_slow_reconciles`.\n",
           "## Other commands\n",
           "The development tools (installed by `make venv`, not in the image) add these:\n"]
    for name, summary, parser in others:
        out.append(f"### `toolcatalog {name}`\n")
        text = (parser.description or summary).strip()
        out.append(f"{text[:1].upper()}{text[1:]}.\n")
        rows = [(flag(action), shown_default(action), help_text(action, f"toolcatalog {name}"))
                for action in options(parser)]
        if rows:
            out.append(table(("Flag", "Default", "Meaning"), rows))
    return "\n".join(out)

