"""Pure condition bookkeeping (metav1.Condition), as cert-manager does it.

`lastTransitionTime` moves only when a condition's status flips; reason, message and
observedGeneration are updated in place. Conditions keep a stable order.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Literal

from ..api.models import Condition


def rfc3339(moment: datetime) -> str:
    """Kubernetes' time format: UTC, second precision, trailing Z."""
    return moment.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def get_condition(conditions: Sequence[Condition], type_: str) -> Condition | None:
    return next((cond for cond in conditions if cond.type == type_), None)


def set_condition(
    conditions: Sequence[Condition],
    *,
    type_: str,
    status: bool | str,
    reason: str,
    message: str,
    generation: int | None,
    now: str,
) -> list[Condition]:
    """Return a new list with `type_` set; other conditions are untouched."""
    status_str: Literal["True", "False", "Unknown"]
    if isinstance(status, bool):
        status_str = "True" if status else "False"
    else:
        status_str = "True" if status == "True" else "False" if status == "False" else "Unknown"
    previous = get_condition(conditions, type_)
    transition = now if previous is None or previous.status != status_str else previous.last_transition_time
    updated = Condition(
        type=type_, status=status_str, reason=reason, message=message,
        last_transition_time=transition, observed_generation=generation,
    )
    if previous is None:
        return [*conditions, updated]
    return [updated if cond.type == type_ else cond for cond in conditions]


def remove_condition(conditions: Sequence[Condition], type_: str) -> list[Condition]:
    """Return a new list without `type_` (abnormal-true conditions are absent when not true)."""
    return [cond for cond in conditions if cond.type != type_]
