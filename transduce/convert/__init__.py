"""Importers: pretrained weights of other toolkits -> transduce model folders (top layer)."""
