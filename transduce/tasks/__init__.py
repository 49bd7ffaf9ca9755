"""Tasks: what is specific to one application (reading, tokenizing, metrics)."""

from transduce.tasks import translation  # noqa: F401  (registers "translation")
from transduce.tasks.base import TASKS, Batch, Example, Task, build_task, register_task

__all__ = ["TASKS", "Batch", "Example", "Task", "build_task", "register_task"]
