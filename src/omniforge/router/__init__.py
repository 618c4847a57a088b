"""The router and the cost of work: measured model profiles, a cost model, usage metering and budgets, model choice."""

from __future__ import annotations
