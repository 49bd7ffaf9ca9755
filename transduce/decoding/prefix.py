"""Forced-prefix decoding: every search can be told how each output must begin.

A prefix is a list of target ids per sentence (no bos). The searches read it
exactly as the model would have generated it, then search on from its end:

* the longest length ``m`` that every row's prefix has is fed to the decoder at
  once on the first call (one forward over ``bos + prefix[:m]``, as a prompt);
* the rest of a longer prefix is forced one step at a time: every other token
  gets ``-inf``, the forced one ``0``.

Prefix tokens are given, not chosen, so they add nothing to a hypothesis's score,
and lengths (``max_len``, ``min_len``, the beam's length normalization) count only
the tokens after the prefix. Hypotheses start with their prefix. Uses: Whisper's
``<|en|><|transcribe|><|notimestamps|>`` prompt, interactive completion in
translation (the user typed the start of the output).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


class ForcedPrefix:
    """Prefixes of ``N`` rows: ``table`` ``(N, P)`` long padded with -1, ``lengths`` ``(N,)``."""

    def __init__(self, table: Tensor, lengths: Tensor) -> None:
        self.table = table
        self.lengths = lengths

    @classmethod
    def build(
        cls, prefixes: Sequence[Sequence[int]], device: torch.device, eos_id: int
    ) -> ForcedPrefix:
        longest = max((len(p) for p in prefixes), default=0)
        table = torch.full((len(prefixes), longest), -1, dtype=torch.long)
        for i, p in enumerate(prefixes):
            if eos_id in p:
                raise ValueError(f"a target prefix may not contain eos (id {eos_id}): {list(p)}")
            table[i, : len(p)] = torch.as_tensor(list(p), dtype=torch.long)
        lengths = torch.tensor([len(p) for p in prefixes], dtype=torch.long)
        return cls(table.to(device), lengths.to(device))

    @property
    def common(self) -> int:
        """Length every row's prefix has: fed to the decoder at once."""
        return int(self.lengths.min()) if self.lengths.numel() else 0

    def select(self, index: Tensor) -> ForcedPrefix:
        """Rows ``index`` (drop finished rows, expand to beams, reorder beams)."""
        return ForcedPrefix(self.table[index], self.lengths[index])

    def apply(self, log_probs: Tensor, step: int, min_len: int, eos_id: int) -> Tensor:
        """Force the prefix token of step ``step`` (from 0) where a row still has one;
        forbid eos until ``min_len`` tokens follow the prefix. log_probs ``(N, V)``."""
        forcing = self.lengths > step  # (N,)
        too_short = (self.lengths + min_len > step) & ~forcing
        if not bool(forcing.any()) and not bool(too_short.any()):
            return log_probs
        log_probs = log_probs.clone()
        if bool(too_short.any()):
            log_probs[too_short, eos_id] = -torch.inf
        if bool(forcing.any()) and step < self.table.size(1):
            token = self.table[:, step].clamp(min=0)  # (N,)
            forced = torch.full_like(log_probs, -torch.inf).scatter_(1, token.unsqueeze(1), 0.0)
            log_probs = torch.where(forcing.unsqueeze(1), forced, log_probs)
        return log_probs


def start_inputs(
    forced: ForcedPrefix | None, n: int, bos_id: int, device: torch.device
) -> tuple[Tensor, Tensor, int]:
    """First decoder input ``(N, 1 + m)`` (bos and the common prefix), the generated-so-far
    tensor ``(N, m)`` and the first step number ``m``."""
    bos = torch.full((n, 1), bos_id, dtype=torch.long, device=device)
    if forced is None or forced.common == 0:
        return bos, torch.empty(n, 0, dtype=torch.long, device=device), 0
    m = forced.common
    fed = forced.table[:, :m]
    return torch.cat([bos, fed], dim=1), fed.clone(), m


__all__ = ["ForcedPrefix", "start_inputs"]
