"""Multimodal pipelines: declarative recipes of typed steps, run as resumable jobs with a SQLite store and artifacts.

    store = PipelineStore(home / "pipelines" / "jobs.db")
    runner = PipelineRunner(service, store, ArtifactStore(home / "pipelines" / "artifacts", store))
    run_id = runner.submit("voice-assistant", {"audio": Path("question.wav")})
"""

from __future__ import annotations

from .artifacts import Artifact, ArtifactStore, is_ref
from .engine import PipelineRunner
from .recipe import InputSpec, Recipe, Step, all_recipes, builtin_recipes, find_recipe, load_recipe
from .steps import JobCancelled, StepContext, StepKind, register_step, step_kinds
from .store import Job, PipelineStore

__all__ = [
    "Artifact", "ArtifactStore", "InputSpec", "Job", "JobCancelled", "PipelineRunner", "PipelineStore", "Recipe",
    "Step", "StepContext", "StepKind", "all_recipes", "builtin_recipes", "find_recipe", "is_ref", "load_recipe",
    "register_step", "step_kinds",
]
