"""transduce: sequence-to-sequence learning on PyTorch.

>>> import transduce
>>> model = transduce.load("runs/demo/best")
>>> model.predict(["Ein Satz."], beam=5)
"""

from __future__ import annotations

__version__ = "0.1.0"


def load(directory, device: str = "cpu", precision: str = "fp32", keep_freed_memory: bool = False):
    """Load a saved model folder; returns a :class:`transduce.inference.Predictor`.

    ``precision="int8"``: dynamic int8 quantization of the Linear/LSTM/GRU layers
    (CPU only; faster, outputs differ slightly from float32).
    ``keep_freed_memory``: on the CPU, let this process reuse freed large blocks
    (:mod:`transduce.memory`; process-wide and one-way, it keeps its peak memory; off by
    default: see docs/decoding.md).
    """
    from transduce.inference import Predictor

    return Predictor.load(directory, device, precision, keep_freed_memory)


__all__ = ["load", "__version__"]
