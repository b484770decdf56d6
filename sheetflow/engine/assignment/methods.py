"""The assignment methods' memory: rotations (``round_robin``, ``least_loaded`` ties), weighted shares, and
why a rep was skipped.
"""

from __future__ import annotations

import bisect
import heapq
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sheetflow.engine.assignment.reps import Loads, Rep, Roster
from sheetflow.engine.assignment.rules import AssignRule
from sheetflow.names import text_key

MAX_REASONS = 3  # ineligible reps named in one explanation before "+N more"
_EPS = 1e-9


# ---------------------------------------------------------------- rotations


@dataclass
class Rotation:
    """A rule's saved rotation (see the module docstring for the JSON form)."""

    last: str = ""
    order: list[str] = field(default_factory=list)
    credit: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_json(cls, text: str | None) -> Rotation:
        try:
            data = json.loads(text) if text else {}
        except json.JSONDecodeError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        credit = data.get("credit")
        if not isinstance(credit, dict):
            credit = {}
        return cls(
            str(data.get("last") or ""),
            [str(n) for n in data.get("order") or [] if isinstance(n, str)],
            {str(k): float(v) for k, v in credit.items() if isinstance(v, (int, float))},
        )

    def to_json(self) -> str:
        data: dict[str, Any] = {"last": self.last, "order": self.order}
        if self.credit:
            data["credit"] = self.credit
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def start_pointer(rotation: Rotation, keys: Sequence[str]) -> float:
    """Where the rotation stands among ``keys`` (candidate keys in Reps order): the next pick is after it.

    The last rep served may have left the Reps sheet (or the rule's assign_to): then the rotation resumes
    at the first rep that followed them in the saved order and is still a candidate, exactly where it
    would have been had that rep never existed. Without history the rotation starts at the first rep.
    """
    if not rotation.last:
        return -0.5
    where = {k: i for i, k in enumerate(keys)}
    last = text_key(rotation.last)
    if last in where:
        return float(where[last])
    order = [text_key(n) for n in rotation.order]
    if last in order:
        i = order.index(last)
        for successor in order[i + 1 :] + order[:i]:
            if successor in where:
                return where[successor] - 0.5
    return -0.5


class _Shares:
    """Weighted turns that stay within one pick of each rep's ideal share at every prefix.

    Each eligible rep i has a share p_i = weight_i / total weight and a credit: the picks it is owed
    (ideal share so far minus picks received). nginx's smooth weighted round robin (pick the largest
    credit) drifts past one pick for some weight mixes with four or more reps (e.g. weights 3,3,15,15,15,2
    leave a rep 54/53 picks behind at pick 46), so the pick is made with Tijdeman's rule for the
    "chairman assignment problem" instead: among reps whose next pick is due (credit >= 1 - C), take
    the one with the earliest deadline (C - credit) / p_i, with C = 1 - 1/(2n - 2). That keeps every
    rep strictly within C < 1 pick of its ideal at every prefix, is deterministic (ties by Reps order)
    and needs two heaps: O(log reps) per pick.

    Credits are saved with the rotation, so the guarantee spans runs. When the eligible set changes (a
    rep goes away, hits capacity or joins), leavers' credit is forfeited, joiners start at 0 and the
    credits are re-centred to sum 0 so the bound keeps holding for the new set.
    """

    def __init__(self, weights: dict[int, float], credit: dict[int, float]) -> None:
        self.weights = weights  # candidate position -> weight (> 0)
        self.members: list[int] = []
        self.base: dict[int, float] = {}
        self.picks: dict[int, int] = {}
        self.share: dict[int, float] = {}
        self.t = 0
        self.total = 0.0
        self._saved = credit
        self.c = 1.0
        self.pending: list[tuple[float, int]] = []
        self.ready: list[tuple[float, int]] = []

    def credits(self) -> dict[int, float]:
        if not self.members:
            return dict(self._saved)
        return {i: round(self.base[i] + self.t * self.share[i] - self.picks[i], 12) for i in self.members}

    def rebase(self, members: list[int]) -> None:
        old = self.credits()
        credit = {i: old.get(i, 0.0) for i in members}
        mean = sum(credit.values()) / len(credit) if credit else 0.0
        self.members = list(members)
        self.base = {i: round(v - mean, 12) for i, v in credit.items()}
        self.total = total = sum(self.weights[i] for i in members)
        self.share = {i: self.weights[i] / total for i in members}
        self.picks = dict.fromkeys(members, 0)
        self.t = 0
        n = len(members)
        self.c = 1.0 - 1.0 / (2 * n - 2) if n > 1 else 1.0
        self.ready, self.pending = [], []
        for i in members:
            heapq.heappush(self.pending, (self._release(i), i))

    def _release(self, i: int) -> float:
        return round((self.picks[i] - self.base[i] + 1 - self.c) / self.share[i], 9)

    def _deadline(self, i: int) -> float:
        return round((self.picks[i] - self.base[i] + self.c) / self.share[i], 9)

    def next(self) -> int:
        self.t += 1
        while self.pending and self.pending[0][0] <= self.t + _EPS:
            _, i = heapq.heappop(self.pending)
            heapq.heappush(self.ready, (self._deadline(i), i))
        if not self.ready:  # cannot happen from a re-centred state; stay total anyway
            _, i = heapq.heappop(self.pending)
            heapq.heappush(self.ready, (self._deadline(i), i))
        _, i = heapq.heappop(self.ready)
        self.picks[i] += 1
        heapq.heappush(self.pending, (self._release(i), i))
        return i


class Turns:
    """One rule's rotation during a run: which candidates are eligible now, and who is next."""

    def __init__(self, rule: AssignRule, roster: Roster, loads: Loads, rotation: Rotation) -> None:
        self.rule = rule
        self.roster = roster
        self.loads = loads
        self.reps = [roster.reps[i] for i in rule.candidates]
        self.keys = [r.key for r in self.reps]
        self.pointer = start_pointer(rotation, self.keys)
        self.last_name = rotation.last
        self.after = f"next after {rotation.last}" if rotation.last else "first in the rotation"
        self._afters = [f"next after {r.name}" for r in self.reps]  # built once: read per record
        self.pick = {"weighted": self.weighted, "least_loaded": self.least_loaded}.get(
            rule.method, self.round_robin
        )
        self.eligible: list[int] = []  # candidate positions, ascending
        self.version = -1
        self.used = False
        self.shares: _Shares | None = None
        self.prefix = f'{rule.label} "{rule.name}" '  # explanations: prefix + method's reason + suffix
        self.suffix = ""  # "; Dee inactive, Eve away until ..."
        if rule.method == "weighted":
            saved = {text_key(k): v for k, v in rotation.credit.items()}
            credit = {p: saved[k] for p, k in enumerate(self.keys) if k in saved}
            self.shares = _Shares({p: r.weight for p, r in enumerate(self.reps)}, credit)

    def refresh(self) -> None:
        """Recompute who is eligible when a rep of this table has just become full (rare)."""
        if self.version == self.loads.version:
            return
        self.version = self.loads.version
        unavailable = self.roster.unavailable
        eligible = [
            p for p, r in enumerate(self.reps) if r.index not in unavailable and not self.loads.full(r.index)
        ]
        if self.shares is not None and eligible != self.shares.members and eligible:
            self.shares.rebase(eligible)
        self.eligible = eligible
        skipped = reasons(self.ineligible())
        self.suffix = f"; {skipped}" if skipped else ""

    def ineligible(self) -> list[tuple[Rep, str]]:
        return [(r, why) for r in self.reps if (why := reason(r, self.roster, self.loads))]

    def advance(self, position: int) -> Rep:
        rep = self.reps[position]
        self.pointer = position
        self.last_name = rep.name
        self.after = self._afters[position]
        self.used = True
        return rep

    def round_robin(self) -> tuple[int, str]:
        i = bisect.bisect_right(self.eligible, self.pointer)
        return self.eligible[i % len(self.eligible)], "round_robin: " + self.after

    def least_loaded(self) -> tuple[int, str]:
        loads, reps = self.loads.counts, self.reps
        counts = [loads[reps[p].index] for p in self.eligible]
        low = min(counts)
        tied = [p for p, c in zip(self.eligible, counts) if c == low]
        i = bisect.bisect_right(tied, self.pointer)
        why = f"least_loaded: {low} open"
        if len(tied) > 1:
            why += f", tie {self.after}"
        return tied[i % len(tied)], why

    def weighted(self) -> tuple[int, str]:
        assert self.shares is not None
        p = self.shares.next()
        rep = self.reps[p]
        return p, f"weighted: {rep.name}'s turn (weight {rep.weight:g} of {self.shares.total:g})"

    def rotation(self) -> Rotation:
        credit = (
            {self.reps[p].name: v for p, v in self.shares.credits().items()}
            if self.shares is not None
            else {}
        )
        return Rotation(self.last_name, [r.name for r in self.reps], credit)


def reason(rep: Rep, roster: Roster, loads: Loads) -> str | None:
    """Why ``rep`` cannot take a record of this table right now, or None when eligible."""
    why = roster.unavailable.get(rep.index)
    if why:
        return why
    if loads.full(rep.index):
        return f"at capacity ({rep.capacity:g})"
    return None


def reasons(items: Sequence[tuple[Rep, str]]) -> str:
    """``Dee inactive, Eve away until 2026-11-30, +2 more``: short enough for one Activity cell."""
    shown = [f"{rep.name} {why}" for rep, why in items[:MAX_REASONS]]
    if len(items) > MAX_REASONS:
        shown.append(f"+{len(items) - MAX_REASONS} more")
    return ", ".join(shown)
