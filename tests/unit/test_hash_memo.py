"""The memo of definition hashes (reconcile/hashing.py) never answers with another definition's hash: equal
definitions get equal hashes, and a definition changed anywhere gets the hash RFC 8785 gives the change."""

from __future__ import annotations

import hashlib
from typing import Any

import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from toolcatalog.reconcile import hashing

texts = st.text(alphabet="ab0 \u00e9\"'\\\u2028\U0001f600\x00", max_size=4)
# JSON's values as a parser makes them; 1, 1.0 and True are equal in Python, and differ in JSON (but for 1 and 1.0).
leaves = (st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | texts
          | st.floats(allow_nan=False, allow_infinity=False, width=64))
values = st.recursive(leaves, lambda children: st.lists(children, max_size=3)
                      | st.dictionaries(texts, children, max_size=3), max_leaves=6)
definitions = st.dictionaries(texts, values, min_size=1, max_size=3)


def rfc8785_hash(definition: dict[str, Any]) -> str:
    return "sha256:" + hashlib.sha256(rfc8785.dumps(definition)).hexdigest()


def paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in `value` a leaf or a container sits at."""
    found = [path] if path else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += paths(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += paths(child, (*path, index))
    return found


def replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    copied = dict(value) if isinstance(value, dict) else list(value)
    copied[path[0]] = replaced(value[path[0]], path[1:], new)
    return copied


@given(definitions)
def test_equal_definitions_get_the_same_hash_from_the_memo_as_without_it(definition: dict[str, Any]) -> None:
    expected = rfc8785_hash(definition)
    assert hashing.hash_v2(definition) == expected
    assert hashing.hash_v2(dict(definition)) == expected                    # remembered now
    assert hashing.hash_v2(dict(reversed(list(definition.items())))) == expected   # another key order


@given(definitions, st.data())
def test_a_definition_changed_anywhere_is_hashed_afresh(definition: dict[str, Any], data: st.DataObject) -> None:
    hashing.hash_v2(definition)                         # the memo holds the original
    path = data.draw(st.sampled_from(paths(definition)))
    changed = replaced(definition, path, data.draw(values))
    assert hashing.hash_v2(changed) == rfc8785_hash(changed)
    if rfc8785.dumps(changed) != rfc8785.dumps(definition):
        assert hashing.hash_v2(changed) != hashing.hash_v2(definition)


def test_true_one_and_one_point_zero_are_told_apart_where_json_does():
    hashes = [hashing.hash_v2({"x": value}) for value in (True, 1, 1.0, True)]
    assert hashes[0] == hashes[3] != hashes[1] == hashes[2]     # RFC 8785 writes 1.0 as 1
