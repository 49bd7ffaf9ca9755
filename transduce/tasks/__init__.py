"""Tasks: what is specific to one application (reading, tokenizing, metrics)."""

from transduce.tasks import (  # noqa: F401  (register the tasks)
    captioning,  # noqa: F401  (registers "captioning")
    speech,  # noqa: F401  (registers "speech")
    summarization,
    translation,
)
from transduce.tasks.base import TASKS, Batch, Example, Task, build_task, register_task

__all__ = ["TASKS", "Batch", "Example", "Task", "build_task", "register_task"]
