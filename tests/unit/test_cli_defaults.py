"""Each default of `toolcatalog run` is written once, in OperatorConfig: the parser, its --help and the
generated configuration reference all come from it."""

from __future__ import annotations

import re

import pytest

from toolcatalog.cli import build_parser, config_from, run_command, shipped_default
from toolcatalog.config import OperatorConfig

SUFFIX = re.compile(r"\(default (?P<default>[^;]*); env (?P<env>TOOLCATALOG_\w+)\)$")


def _run_actions(env: dict[str, str]):
    run, environment = run_command(env=env)
    return [action for action in run._actions if action.option_strings and action.dest != "help"], environment


def test_no_flags_and_no_environment_give_operator_configs_own_defaults():
    args = build_parser(env={}).parse_args(["run"])
    assert config_from(args) == OperatorConfig()


def test_every_flag_with_a_variable_says_in_its_help_the_shipped_default_and_the_variable():
    actions, environment = _run_actions({})
    assert len(environment) >= 20
    for action in actions:
        if action.dest not in environment:
            continue
        match = SUFFIX.search(" ".join(action.help.split()))
        assert match, f"--{action.dest}: its help names no default and variable"
        assert match["env"] == environment[action.dest]
        shipped = getattr(OperatorConfig, action.dest)
        if shipped is not None and not isinstance(shipped, tuple):     # None and lists say it in words
            assert match["default"] == shipped_default(action.dest), action.dest


def test_the_shipped_default_reads_as_a_person_writes_it():
    assert shipped_default("max_response_bytes") == "8 MiB"
    assert shipped_default("max_sync_timeout") == "60"
    assert shipped_default("egress_deny") == "169.254.0.0/16,fe80::/10"
    assert shipped_default("metrics_port") == "off"


@pytest.mark.parametrize(("variable", "field", "text", "value"), [
    ("TOOLCATALOG_MAX_LISTENERS", "max_listeners", "7", 7),
    ("TOOLCATALOG_METRICS_PORT", "metrics_port", "9090", 9090),
    ("TOOLCATALOG_EGRESS_DENY", "egress_deny", "", ()),
    ("TOOLCATALOG_MAX_SLOW_SYNCS", "max_slow_syncs", "0", 0),
])
def test_a_variable_sets_the_default_and_the_flag_wins(variable, field, text, value):
    parser = build_parser(env={variable: text})
    assert getattr(config_from(parser.parse_args(["run"])), field) == value
    flag = "--" + field.replace("_", "-")
    explicit = "10.0.0.0/8" if field == "egress_deny" else "3"
    wanted = ("10.0.0.0/8",) if field == "egress_deny" else 3
    assert getattr(config_from(parser.parse_args(["run", flag, explicit])), field) == wanted
