"""The alignment drawings: pixels follow the weights, labels are drawable, empty
outputs still draw."""

from __future__ import annotations

import numpy as np
import torch

from transduce.evaluation import plots


def test_heatmap_cells_follow_the_weights():
    w = torch.softmax(torch.randn(5, 7, generator=torch.Generator().manual_seed(0)), dim=1)
    fig = plots.heatmap([f"s{i}" for i in range(7)], [f"t{i}" for i in range(5)], w, title="x")
    left, top = fig.origin
    px = np.asarray(fig.image)
    centres = px[top + fig.cell // 2 :: fig.cell][:5, left + fig.cell // 2 :: fig.cell][:, :7]
    assert (centres == plots.shade(w)).all()
    # darker (less red) means more weight: the row's argmax is its darkest cell
    assert (centres[..., 0].argmin(axis=1) == w.argmax(dim=1).numpy()).all()


def test_p_gen_column_widens_the_picture():
    w = torch.full((2, 12), 1 / 12)
    src = [f"s{i}" for i in range(12)]
    plain = plots.heatmap(src, ["x", "y"], w)
    gated = plots.heatmap(src, ["x", "y"], w, p_gen=torch.tensor([0.9, 0.1]))
    assert gated.image.width > plain.image.width


def test_labels_are_drawable():
    assert plots.label(" ") == "_" and plots.label("") == "."
    assert plots.label("\u2581Haus") == "_Haus" and plots.label("\u2047") == "<unk>"
    assert plots.label("x" * 30) == "x" * 15 + "..."


def test_empty_outputs_draw_axes_only():
    assert plots.heatmap(["a", "b"], [], torch.zeros(0, 2)).image.height > 0
    assert plots.speech_figure(torch.randn(50, 80), [], torch.zeros(0, 12)).image.height >= 160


def test_rounded_weights_are_json_numbers():
    assert plots.rounded(torch.tensor([[0.12345, 0.87655]])) == [[0.123, 0.877]]
    assert plots.rounded(None) is None
