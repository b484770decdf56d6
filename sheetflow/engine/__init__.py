"""The engine layer: tables + rules + saved state + clock -> Plan, with one module per stage.

``run`` (plan_run, STAGES) → stages: ``scoring`` (ids, scoring, lifecycle), ``assignment``,
``automations`` (deals pipeline and the Automations sheet), ``sla``, ``sequences``, ``report``; all
of them work on a :class:`Context` (``context``) and plan emails through ``emails``.
"""

from sheetflow.engine.context import Context
from sheetflow.engine.plan import Plan
from sheetflow.engine.run import STAGES, new_run_id, plan_run
from sheetflow.engine.scoring import stage_ids

__all__ = ["STAGES", "Context", "Plan", "new_run_id", "plan_run", "stage_ids"]
