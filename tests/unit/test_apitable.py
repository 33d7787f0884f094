"""The emulator's server-side Tables read cells and ages as a real API server does (the printed result is
compared with a real server's in tests/e2e/test_kubectl_get.py; these are the cases no CRD of ours shows)."""

from __future__ import annotations

import datetime

import pytest

from toolcatalog_dev.apitable import Columns, age, cell, human_duration, table_version

KUBECTL_ACCEPT = ("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;"
                  "g=meta.k8s.io,application/json")


@pytest.mark.parametrize(("seconds", "shown"), [
    (-5, "<invalid>"), (-1, "0s"), (0, "0s"), (119, "119s"), (120, "2m"), (185, "3m5s"), (600, "10m"),
    (179 * 60, "179m"), (3 * 3600, "3h"), (3 * 3600 + 120, "3h2m"), (8 * 3600 + 59, "8h"), (47 * 3600, "47h"),
    (48 * 3600, "2d"), (50 * 3600, "2d2h"), (8 * 86400, "8d"), (729 * 86400, "729d"), (730 * 86400, "2y"),
    (731 * 86400, "2y1d"), (8 * 365 * 86400, "8y"),
])
def test_ages_read_as_kubectl_shows_them(seconds, shown):
    assert human_duration(seconds) == shown


def test_a_date_cell_is_the_age_of_its_timestamp():
    now = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    assert age("2026-01-02T03:00:00Z", now) == "4m5s"
    assert age("yesterday", now) == "<invalid>"


@pytest.mark.parametrize(("column_type", "value", "shown"), [
    ("integer", 3, 3), ("integer", 3.0, 3), ("integer", "3", None), ("integer", True, None),
    ("number", 2, 2.0), ("boolean", False, False), ("boolean", "false", None),
    ("string", "a", "a"), ("string", 5, "5"), ("string", True, "true"), ("string", ["a", "b"], '["a","b"]'),
    ("date", 5, None), ("string", None, None),
])
def test_cells_take_their_columns_type_or_none(column_type, value, shown):
    assert cell(column_type, value) == shown


def test_a_crd_without_printer_columns_shows_name_and_age():
    columns = Columns(None)
    assert [d["name"] for d in columns.definitions] == ["Name", "Age"]
    row = columns.row({"metadata": {"name": "x", "creationTimestamp": "2020-01-01T00:00:00Z"}}, "None")
    assert row["cells"][0] == "x" and row["cells"][1].endswith(("y", "d")) and "object" not in row


def test_a_table_is_served_only_when_asked_for_before_plain_json():
    assert table_version({"Accept": KUBECTL_ACCEPT}) == "v1"
    assert table_version({"accept": "application/json;as=Table;v=v1beta1;g=meta.k8s.io"}) == "v1beta1"
    assert table_version({"Accept": "application/json, application/json;as=Table;v=v1;g=meta.k8s.io"}) is None
    assert table_version({"Accept": "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"}) is None
    assert table_version({}) is None
