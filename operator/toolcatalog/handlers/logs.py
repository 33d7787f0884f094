"""What the operator logs beyond kopf's own lines: one line per sync, and JSON lines on request.

- `log_sync` is an observer of the reconciler: one line per sync (and per refresh answered without
  one, when rate limited) with the resource, the trigger, the result, the failure reason, the
  duration and the diff counts: INFO when it succeeded, WARNING when it failed.
- `JsonLines` (`--log-format json`) writes every record of every logger as one JSON object a line:
  time, level, logger, message, the object a kopf per-object record is about, the structured
  fields a record carries (a sync's), and a traceback. The redacting filter has already cleaned the
  message and the traceback when it formats them; every other string it writes is masked again
  with the same redactor, so no credential the operator has read reaches the log in any field.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from ..api.redact import Redactor
from ..engine.reconciler import Outcome

SYNC_LOGGER = logging.getLogger("toolcatalog.sync")

# Attributes every LogRecord has; anything else on a record came in through `extra`.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
# kopf's extras on its per-object records: its settings and posting flags stay out, the object is
# written as "object".
_KOPF_EXTRAS = frozenset({"settings", "k8s_skip", "k8s_ref"})


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


class JsonLines(logging.Formatter):
    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC)
        line: dict[str, Any] = {
            "time": stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        ref = getattr(record, "k8s_ref", None)
        if isinstance(ref, Mapping):
            line["object"] = {key: value for key, value in ref.items() if value}
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and key not in _KOPF_EXTRAS and not key.startswith("_"):
                if key == "sync" and isinstance(value, Mapping):
                    line.update(value)          # a sync's fields at the top level, for log queries
                else:
                    line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return json.dumps(self._masked(line), default=str, ensure_ascii=False, separators=(",", ":"))

    def _masked(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.redactor.redact(value)
        if isinstance(value, Mapping):
            return {str(key): self._masked(item) for key, item in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self._masked(item) for item in value]
        if isinstance(value, bool | int | float) or value is None:
            return value
        return self.redactor.redact(str(value))


def use_json_lines(redactor: Redactor) -> None:
    """Every handler of the root logger (kopf's, after kopf.configure) writes JSON lines."""
    for handler in logging.getLogger().handlers:
        handler.setFormatter(JsonLines(redactor))
