"""docs/reference/kubectl-plugin.md: the commands of `kubectl toolcatalog`, from the plugin's own parser."""

from __future__ import annotations

import argparse

from toolcatalog.kubectl import plugin

from .flags import flag, help_text, options, shown_default, subcommands
from .markdown import banner, code, prose, table


def _positionals(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [action for action in parser._actions
            if not action.option_strings and action.help != argparse.SUPPRESS
            and not isinstance(action, argparse._SubParsersAction)]


def _usage(name: str, parser: argparse.ArgumentParser) -> str:
    words = [f"kubectl toolcatalog {name}"]
    for action in _positionals(parser):
        metavar = str(action.metavar or action.dest)
        words.append(f"[{metavar}...]" if action.nargs == "*" else metavar)
    for action in options(parser):
        if action.dest in ("namespace", "context", "kubeconfig"):
            continue
        long = action.option_strings[-1]
        metavar = "" if action.nargs == 0 else " " + str(action.metavar or "|".join(map(str, action.choices or []))
                                                         or action.dest.upper())
        words.append(f"[{long}{metavar}]")
    return " ".join(words)


def _with_default(action: argparse.Action, command: str) -> str:
    text, default = help_text(action, command), shown_default(action)
    return text if default in ("", "off") or "default" in text else f"{text} (default {default})"


def render() -> str:
    parser = plugin.build_parser()
    doc = (plugin.__doc__ or "").strip()
    summary, _, rest = doc.partition("\n\n")
    out = [banner("operator/toolcatalog/kubectl/plugin.py (its argparse parser)"),
           "# The kubectl plugin: `kubectl toolcatalog`\n",
           f"{prose(summary)}\n",
           "`pip install 'toolcatalog[kubectl]'` (or `make venv`) installs a `kubectl-toolcatalog` executable; with it "
           "on your `PATH`, `kubectl toolcatalog` works (and `kubectl-toolcatalog` works without kubectl). Every "
           "command honours `KUBECONFIG`, `--kubeconfig`, `--context` and `-n`, before or after the command. "
           "KIND is `toolserver`, `connectorconfig`, their plurals, or the short names `mcpts` and `mcpcc`; "
           "`KIND NAME` works as well as `KIND/NAME`. How to use them: [approving tool changes]"
           "(../how-to/approve-tool-changes.md), [refreshing](../how-to/refresh.md), "
           "[status and search](../how-to/fleet.md).\n",
           "Global flags:\n",
           table(("Flag", "Meaning"), [(flag(action), help_text(action, "kubectl")) for action in options(parser)]),
           "Exit status:\n",
           "```text\n" + rest.partition("Exit status:\n")[2].rstrip() + "\n```\n",
           table(("Command", "What it does"), [(f"[`{name}`](#{name})", prose(summary_))
                                               for name, summary_, _ in subcommands(parser)])]
    for name, summary_, sub in subcommands(parser):
        out.append(f"## {name}\n")
        out.append("```text\n" + _usage(name, sub) + "\n```\n")
        out.append(prose(" ".join((sub.description or summary_).split())) + "\n")
        rows = [(code(str(action.metavar or action.dest)), help_text(action, name)) for action in _positionals(sub)]
        rows += [(flag(action), _with_default(action, name))
                 for action in options(sub) if action.dest not in ("namespace", "context", "kubeconfig")]
        if rows:
            out.append(table(("Argument", "Meaning"), rows))
        if sub.epilog:
            out.append(prose(" ".join(sub.epilog.split())) + "\n")
    return "\n".join(out)
