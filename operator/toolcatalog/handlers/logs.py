"""What the operator logs beyond kopf's own lines: one line per sync, and JSON lines on request.

- `log_sync` is an observer of the reconciler: one line per sync (and per refresh answered without
  one, when rate limited) with the resource, the trigger, the result, the failure reason, the
  duration and the diff counts: INFO when it succeeded, WARNING when it failed.
- `--log-format json` is kopf's JSON format (python-json-logger): one JSON object a line with the
  message, `timestamp`, `severity`, the object a kopf per-object record is about and the extra fields
  of a record. `StructuredFields` adds the logger's name, puts a sync's fields at the top level, and
  masks every string beside the message and the traceback, which the redacting filter (cli.py) has
  cleaned: no credential the operator has read reaches the log in any field.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from ..api.redact import Redactor
from ..engine.reconciler import Outcome

SYNC_LOGGER = logging.getLogger("toolcatalog.sync")

# Attributes every LogRecord has; anything else on a record came in through `extra`.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
# kopf's extras on its per-object records that its formatter leaves out (its settings, a posting flag);
# `k8s_ref`, the object, it writes as "object".
_KOPF_FLAGS = frozenset({"settings", "k8s_skip"})


def sync_fields(outcome: Outcome) -> dict[str, Any] | None:
    """The structured fields of one sync (None: the reconcile ran no sync and answered no refresh)."""
    plan = outcome.plan
    if plan is None or not (plan.synced or plan.refreshed):
        return None
    kind, namespace, name = outcome.key
    status = plan.status
    fields: dict[str, Any] = {"kind": kind, "namespace": namespace, "name": name,
                              "trigger": outcome.decision.trigger or ""}
    if plan.synced and status.last_sync is not None:
        last = status.last_sync
        error = last.error
        fields.update(trigger=last.trigger, result=last.result, reason=error.reason if error else "",
                      durationMs=last.duration_ms)
    else:                                   # a refresh answered without a sync: rate limited
        refresh = status.last_refresh
        error = refresh.error if refresh is not None else None
        fields.update(result=refresh.result if refresh is not None else "", reason=error.reason if error else "",
                      durationMs=0)
    fields["totalMs"] = round(outcome.seconds * 1000)       # with every read and write, not just the fetch
    fields["cacheWritten"] = outcome.wrote_cache
    if outcome.wrote_cache and status.cache is not None:
        fields["contentHash"] = status.cache.content_hash
    diff = plan.diff
    fields.update(tools=status.tool_count, new=len(diff.new) if diff else 0,
                  removed=len(diff.removed) if diff else 0, changed=len(diff.changed) if diff else 0)
    if error is not None:
        fields["error"] = error.message
    return fields


def log_sync(outcome: Outcome) -> None:
    """Reconciler observer: one line per sync."""
    fields = sync_fields(outcome)
    if fields is None:
        return
    reason = f" ({fields['reason']})" if fields["reason"] else ""
    text = (f"{fields['kind']} {fields['namespace']}/{fields['name']}: {fields['trigger']} sync "
            f"{fields['result']}{reason} in {fields['durationMs']} ms; {fields['tools']} usable tools, "
            f"{fields['new']} new, {fields['removed']} removed, {fields['changed']} changed")
    if "error" in fields:
        text += f": {fields['error']}"
    level = logging.WARNING if fields["result"] == "Failed" else logging.INFO
    SYNC_LOGGER.log(level, "%s", text, extra={"sync": fields})


class StructuredFields(logging.Filter):
    """Readies a record for kopf's JSON formatter (`--log-format json`), after the redacting filter.

    kopf's formatter (python-json-logger's) writes a record's extra attributes as top-level fields, and
    a message that is a dict as that dict's fields. A sync's fields go into such a dict, because one of
    them (`name`) is also a LogRecord attribute, which `extra` cannot set and the formatter leaves out;
    `logger` joins them (kopf's format has no logger name). Every other extra, and the object a kopf
    per-object record is about, is replaced by a masked copy: the redacting filter has cleaned the
    message and the traceback, this masks every other string that reaches the line. Running it twice
    (a record through two handlers) changes nothing.
    """

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.msg if isinstance(record.msg, dict) else {"message": record.getMessage()}
        fields: dict[str, Any] = {"logger": record.name, **self.redactor.redact_all(message)}
        for key, value in list(vars(record).items()):
            if key in _RECORD_ATTRIBUTES or key in _KOPF_FLAGS or key.startswith("_"):
                continue
            if key == "sync" and isinstance(value, Mapping):
                fields.update(self.redactor.redact_all(value))
                delattr(record, key)
            else:               # a new value, not the object changed in place: kopf's adapters share theirs
                setattr(record, key, self.redactor.redact_all(value))
        record.msg, record.args = fields, ()
        return True


def use_json_format(redactor: Redactor) -> None:
    """Every handler of the root logger (kopf's, after kopf.configure with its JSON format) gets
    `StructuredFields` after the redacting filter."""
    for handler in logging.getLogger().handlers:
        handler.addFilter(StructuredFields(redactor))
