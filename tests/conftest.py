"""Test configuration: every log level captured."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _capture_all_levels(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(1)
