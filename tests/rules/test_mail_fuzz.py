"""Issue 20: a seeded fuzz run over templates in the suite — no traceback, no hang, no escape, no
injected header. The longer run is ``benchmarks/fuzz_templates.py`` (counts in README)."""

from __future__ import annotations

import sys

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))

from fuzz_templates import fuzz  # noqa: E402


@pytest.mark.slow
def test_fuzzed_templates_render_or_fail_cleanly():
    counts = fuzz(60, seed=7, batch=30)  # a few seconds; AssertionError inside on any escape
    assert sum(v for k, v in counts.items() if k != "messages verified") == 60
    assert counts["rendered"] >= 5 and counts["messages verified"] == counts["rendered"]
    assert counts["error: template"] >= 5  # the generator does reach the error paths
