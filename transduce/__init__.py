"""transduce: sequence-to-sequence learning on PyTorch."""
