"""Quality harnesses that measure models and recipes on real data (HumanEval pass@1, ...)."""

from __future__ import annotations

__all__: list[str] = []
