"""Server-side Tables for custom resources, as a kmock reaction: what ``kubectl get`` prints.

kubectl asks for ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io`` and prints the columns the
server sends. For a custom resource a real API server builds them from the CRD version's
``additionalPrinterColumns`` (or a single Age column when there are none), behind a Name column:
each cell is the column's JSONPath evaluated on the object (no value: null, printed ``<none>``),
typed by the column's ``type``; a ``date`` is sent as a human-readable age ("5m", "3h2m"), as
apimachinery's ``duration.HumanDuration`` writes it. Each row carries the object as
PartialObjectMetadata (``includeObject=Metadata``, the default), the whole object
(``includeObject=Object``) or nothing (``None``): kubectl reads the namespace column from it.

``TableReaction`` is the reaction: it answers get, list and watch requests (``kubectl get -w``: each
event's object a one-row Table) that ask for a Table of a resource with printer columns, and passes
everything else on (NotImplementedError), so it sits just above the reaction that serves objects.
Other resources (ConfigMaps, Namespaces) are served as objects: kubectl then prints NAME and AGE.
"""
from __future__ import annotations

import contextlib
import datetime
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import kmock
from jsonpath_ng.ext import parse as parse_jsonpath

NAME_DESCRIPTION = ("Name must be unique within a namespace. Is required when creating resources, although some "
                    "resources may allow a client to request the generation of an appropriate name automatically. "
                    "Name is primarily intended for creation idempotence and configuration definition. Cannot be "
                    "updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names")
DEFAULT_COLUMNS = [{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]


def human_duration(seconds: float) -> str:
    """apimachinery's duration.HumanDuration: "45s", "5m12s", "3h", "2d4h", "1y30d"."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes, hours = s // 60, s // 3600
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = hours // 24 % 365
        return f"{hours // 24 // 365}y{days}d" if days else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def age(timestamp: Any, now: datetime.datetime | None = None) -> str:
    """A date cell: the time since an RFC 3339 timestamp, or ``<invalid>`` as a real server says."""
    try:
        then = datetime.datetime.fromisoformat(str(timestamp).replace("Z", "+00:00"))
    except ValueError:
        return "<invalid>"
    if then.tzinfo is None:
        return "<invalid>"
    return human_duration(((now or datetime.datetime.now(datetime.UTC)) - then).total_seconds())


def cell(column_type: str, value: Any) -> Any:
    """A value as the column's type, as apiextensions-apiserver's table convertor types it; None if it is not one."""
    if value is None:
        return None
    if column_type == "string":  # printed as JSONPath prints it: strings raw, other values as JSON
        return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    if column_type == "integer" and isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    if column_type == "number" and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if column_type == "boolean" and isinstance(value, bool):
        return value
    if column_type == "date" and isinstance(value, str):
        return age(value)
    return None


class Columns:
    """A CRD version's printer columns: their definitions and how to read each cell from an object."""

    def __init__(self, printer_columns: list[dict[str, Any]] | None) -> None:
        self.columns = printer_columns or DEFAULT_COLUMNS
        self.paths = []
        for column in self.columns:
            try:
                self.paths.append(parse_jsonpath("$" + column["jsonPath"]))
            except Exception as exc:  # jsonpath-ng's lexer and parser errors: a CRD a real server refuses
                raise ValueError(f"unrecognized column definition {column.get('jsonPath')!r}: {exc}") from exc
        self.definitions = [{"name": "Name", "type": "string", "format": "name", "description": NAME_DESCRIPTION,
                             "priority": 0}]
        self.definitions += [{"name": c["name"], "type": c["type"], "format": c.get("format", ""),
                              "description": c.get("description") or "Custom resource definition column "
                                                                      f"(in JSONPath format): {c['jsonPath']}",
                              "priority": c.get("priority", 0)} for c in self.columns]

    def row(self, obj: dict[str, Any], include: str) -> dict[str, Any]:
        cells: list[Any] = [(obj.get("metadata") or {}).get("name", "")]
        for column, path in zip(self.columns, self.paths, strict=True):
            found = path.find(obj)
            cells.append(cell(column["type"], found[0].value) if found else None)
        row: dict[str, Any] = {"cells": cells}
        if include == "Object":
            row["object"] = obj
        elif include != "None":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": obj.get("metadata") or {}}
        return row


def table_version(headers: Any) -> str | None:
    """``v1`` or ``v1beta1`` when the Accept header asks for a Table before any plain form, else None."""
    accept = next((str(value) for key, value in dict(headers or {}).items() if key.lower() == "accept"), "")
    for media in accept.split(","):
        kind, *parameters = (part.strip() for part in media.split(";"))
        options = dict(part.split("=", 1) for part in parameters if "=" in part)
        if options.get("as") == "Table" and options.get("g") == "meta.k8s.io" and options.get("v") in ("v1",
                                                                                                        "v1beta1"):
            return options["v"]
        if "as" not in options and kind in ("application/json", "*/*", "application/*", ""):
            return None
    return None


Events = AsyncIterator[bytes | dict[str, Any]]


class TableReaction:
    """A kmock reaction: Tables for the resources in ``columns``, from what ``read`` answers for the
    request (a list, with its ``metadata.resourceVersion``, or one object) or what ``watch`` streams
    (events: bytes to pass on, or dicts); else NotImplementedError."""

    def __init__(self, columns: dict[kmock.resource, Columns], read: Callable[[kmock.Request], dict[str, Any]],
                 watch: Callable[[kmock.Request], Events]) -> None:
        self.columns = columns
        self.read = read
        self.watch = watch

    def __call__(self, request: kmock.Request) -> dict[str, Any] | Events:
        version = table_version(request.headers)
        columns = self.columns.get(request.resource) if request.resource is not None else None
        if version is None or columns is None or request.method != kmock.method.GET:
            raise NotImplementedError
        include = request.params.get("includeObject") or "Metadata"
        if request.action == kmock.action.WATCH:
            return self.tables_of(self.watch(request), columns, version, include)
        if request.action not in (kmock.action.LIST, kmock.action.FETCH):
            raise NotImplementedError
        answer = self.read(request)
        objects = answer.get("items") or [] if request.action == kmock.action.LIST else [answer]
        return table(columns, version, (answer.get("metadata") or {}).get("resourceVersion", ""),
                     [columns.row(obj, include) for obj in objects])

    @staticmethod
    async def tables_of(events: Events, columns: Columns, version: str, include: str) -> Events:
        """Each event's object as a one-row Table; errors and bookmarks as they are."""
        async with contextlib.aclosing(events) as items:  # type: ignore[type-var]
            async for item in items:
                if isinstance(item, dict) and item.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                    obj = item.get("object") or {}
                    item = {**item, "object": table(columns, version, (obj.get("metadata") or {}).get(
                        "resourceVersion", ""), [columns.row(obj, include)])}
                yield item


def table(columns: Columns, version: str, resource_version: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"kind": "Table", "apiVersion": f"meta.k8s.io/{version}", "metadata": {"resourceVersion": resource_version},
            "columnDefinitions": columns.definitions, "rows": rows}
