"""HTTP API and demo page: ``transduce serve MODEL_DIR...`` or ``create_app(predictors)``."""

from __future__ import annotations

from transduce.serving.app import Limits, create_app, load_predictors

__all__ = ["Limits", "create_app", "load_predictors"]
