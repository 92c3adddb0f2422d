"""Decomposition of any model into LUT units.

``ir`` holds the small graph both front ends produce; ``torch_fx`` (an ``nn.Module``, with ``decompose_module``) and
``onnx`` (an ONNX file, with ``decompose_onnx``) read a model into it; ``fold`` rewrites arithmetic activations
and explicit pads; ``lower`` turns the graph into op specs, and ``units`` asks the block registry for the chains
a runtime executes as one piece. The front ends import torch or onnx, so callers import them where they are used.
"""

from latency_lut.decompose.ir import DecomposedOp, ModelError, Node, TraceError, UnsupportedLayerError
from latency_lut.decompose.lower import describe

# ``lower`` (the function) stays in its module: re-exported here it would hide the submodule of the same name.

__all__ = ["DecomposedOp", "ModelError", "Node", "TraceError", "UnsupportedLayerError", "describe"]
