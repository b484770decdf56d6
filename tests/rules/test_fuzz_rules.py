"""A bounded fuzz of the ``when`` language in the suite (benchmarks/fuzz_rules.py runs the long one): random
and mutated expressions compile to a rule or a WhenError, evaluate to one bool per row over hostile values,
finish quickly and cause no process, socket or file write."""

from __future__ import annotations

import sys

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))

import fuzz_rules  # noqa: E402


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fuzzed_when_expressions_never_crash_hang_or_escape(seed):
    report = fuzz_rules.fuzz(400, seed=seed, budget=5.0)
    assert report.total == 400
    assert report.compiled > 50 and report.rejected > 50  # the generator reaches both outcomes
    assert not report.crashes, report.crashes[:5]
    assert not report.hangs, report.hangs[:5]
    assert not report.escapes, report.escapes[:5]
    assert not report.bad_shape, report.bad_shape[:5]


def test_the_watchdog_sees_what_an_escape_would_do():
    assert fuzz_rules._escaped([("subprocess.Popen", ("sh",))]) == "subprocess.Popen"
    assert fuzz_rules._escaped([("open", ("/tmp/x", "w", 0))]).startswith("open for writing")
    assert fuzz_rules._escaped([("exec", ("<code>",))]) == "exec"
    assert fuzz_rules._escaped([("import", ("x",)), ("exec", ("<code>",)), ("open", ("/x.py", "r", 0))]) == ""


def test_the_generator_is_deterministic_and_varied():
    first, again = fuzz_rules.expressions(300, 5), fuzz_rules.expressions(300, 5)
    assert first == again
    joined = " ".join(first)
    for piece in ("matches", "__import__", " in (", "is empty", "days_since(", "(((((((((("):
        assert piece in joined, piece
