"""Hypothesis profiles for the fuzz tier (DESIGN principle 9).

* ``ci`` (the default): deterministic (``derandomize=True``, no example
  database), so a red CI run is red again on every machine, and small enough
  that the whole tier stays well under ~30 s on two cores.
* ``long``: random seeds and many more examples, for fuzzing campaigns:
  ``HYPOTHESIS_PROFILE=long .venv/bin/python -m pytest tests/fuzz``.
  Failures found there are stored in ``.hypothesis/`` and replayed first on
  the next long run; copy a failing input into a regression test.

No profile has a deadline: CI machines are shared and noisy, and a deadline is
a timing assertion (the design says timing goals are benchmarks, not tests).
Tests scale their own budget with :func:`budget`-style fractions of
``settings().max_examples``, so the profile still decides the total effort.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_COMMON = dict(
    deadline=None,
    # Building an area per example is deliberate; it is not a slow strategy.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)

settings.register_profile("ci", derandomize=True, database=None, max_examples=100, **_COMMON)
settings.register_profile("long", max_examples=5000, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
