"""Hypothesis profiles shared by the whole suite.

``ci`` is small and derandomized, so CI runs are quick and repeatable; it is chosen when the
``CI`` environment variable is set. ``dev`` (the default) draws a few more examples, and
``thorough`` many more, for bug hunting. ``HYPOTHESIS_PROFILE=<name>`` picks one explicitly.
"""

import os

from hypothesis import HealthCheck, settings

_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large]

settings.register_profile(
    "ci", max_examples=20, deadline=None, derandomize=True, print_blob=True,
    suppress_health_check=_QUIET,
)
settings.register_profile("dev", max_examples=40, deadline=None, suppress_health_check=_QUIET)
settings.register_profile(
    "thorough", max_examples=300, deadline=None, suppress_health_check=_QUIET
)

_DEFAULT = "ci" if os.environ.get("CI") else "dev"
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or _DEFAULT)
