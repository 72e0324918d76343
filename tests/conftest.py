"""Test configuration: every log level captured; Hypothesis profiles."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

# The suite's profile stays quick; `nox -s fuzz` selects "fuzz" (100,000 inputs each).
settings.register_profile("suite", max_examples=150, deadline=None)
settings.register_profile("fuzz", max_examples=100_000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "suite"))


@pytest.fixture(autouse=True)
def _capture_all_levels(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(1)
