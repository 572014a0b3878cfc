"""Models in formats other runtimes read: ONNX (:mod:`steadyclf.export.onnx_graph`).

Exporters work on the plain :class:`~steadyclf.persistence.ModelState` (a model directory
or ``BinaryClassifier.to_state()``), never on torch: the graph is built from the same
float64 tensors the NumPy forward pass (:mod:`steadyclf.nn.numpy_forward`) reads.
"""

from __future__ import annotations

__all__: list[str] = []
