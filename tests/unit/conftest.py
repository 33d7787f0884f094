"""Hypothesis profiles for the property tests (tests/unit/test_properties_*.py).

- `ci` (the default, what `make test` and .ci/run use): derandomized, so every run tries the same
  examples and a failure is reproducible from the commit alone; no example database on disk.
- `explore`: random and ten times the examples, to hunt for new counterexamples locally:
  `HYPOTHESIS_PROFILE=explore .venv/bin/pytest -q tests/unit -k properties`. Whatever it finds
  belongs in the test as an `@example`, so the `ci` profile keeps checking it.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=100, derandomize=True, database=None, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "explore", max_examples=1000, derandomize=False, database=None, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
