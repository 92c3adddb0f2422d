"""Torch front end of the decomposition: ``torch.fx`` trace + shape propagation -> :class:`decompose.Node` list.

Blocks of the search space (``InvertedResidual``, ``SqueezeExcite``, ``ChannelShuffle``, ``GlobalAvgPool``) are
traced as leaves, so a block is priced as the block the LUT measured. A parameter-free module defined outside
torch (a hand-written ``h_swish``, ``h_sigmoid``) is recognized by its behaviour: it is run on a probe tensor and
compared with every activation the key grammar knows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import operator
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp, TensorMetadata

from latency_lut.blocks.layers import ChannelShuffle, GlobalAvgPool, SqueezeExcite
from latency_lut.blocks.mbconv import InvertedResidual
from latency_lut.decompose import ModelError, Node
from latency_lut.ops import OpSpec

_ACT_MODULES: dict[type, str] = {nn.ReLU: "relu", nn.ReLU6: "relu6", nn.Hardswish: "hswish",
                                 nn.Hardsigmoid: "hsigmoid", nn.Sigmoid: "sigmoid", nn.SiLU: "swish"}
_ACT_FUNCS: dict[Any, str] = {F.relu: "relu", torch.relu: "relu", F.relu6: "relu6", F.hardswish: "hswish",
                              F.hardsigmoid: "hsigmoid", torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid",
                              F.silu: "swish"}
_ACT_METHODS = {"relu": "relu", "relu_": "relu", "sigmoid": "sigmoid", "sigmoid_": "sigmoid"}
_ACT_REFS = {"relu": F.relu, "relu6": F.relu6, "hswish": F.hardswish, "hsigmoid": F.hardsigmoid,
             "sigmoid": torch.sigmoid, "swish": F.silu}
_FREE_MODULES = (nn.Flatten, nn.Unflatten, nn.Dropout, nn.Dropout2d, nn.Identity)
_FREE_FUNCS = {torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze, F.dropout, torch.clone}
_FREE_METHODS = {"view", "reshape", "flatten", "contiguous", "expand", "expand_as", "squeeze", "unsqueeze",
                 "clone", "detach", "float", "view_as"}
_LEAF_BLOCKS = (InvertedResidual, SqueezeExcite, ChannelShuffle, GlobalAvgPool)


def probe_activation(m: nn.Module) -> str | None:
    """The activation a parameter-free module computes, or None."""
    if any(True for _ in m.parameters()) or any(True for _ in m.buffers()):
        return None
    x = torch.linspace(-8.0, 8.0, 4 * 8 * 8).reshape(1, 4, 8, 8)
    try:
        with torch.no_grad():
            y = m(x.clone())
    except Exception:  # any failure means "not an elementwise activation"
        return None
    if not isinstance(y, torch.Tensor) or y.shape != x.shape:
        return None
    for name, ref in _ACT_REFS.items():
        if torch.allclose(y, ref(x), atol=1e-5):
            return name
    return "linear" if torch.equal(y, x) else None


class _Tracer(fx.Tracer):
    def __init__(self, acts: dict[str, str]) -> None:
        super().__init__()
        self.acts = acts

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, _LEAF_BLOCKS) or qualname in self.acts or super().is_leaf_module(m, qualname)


def _probe_all(model: nn.Module) -> dict[str, str]:
    # Probed before tracing: running a module while fx traces would re-enter the tracer.
    acts: dict[str, str] = {}
    for qualname, m in model.named_modules():
        if qualname and not type(m).__module__.startswith("torch.nn") and not list(m.children()):
            act = probe_activation(m)
            if act is not None:
                acts[qualname] = act
    return acts


def torch_graph(model: nn.Module, input_shape: tuple[int, ...]) -> list[Node]:
    name = type(model).__name__
    if not isinstance(model, nn.Module):
        raise ModelError(f"expected a torch nn.Module, got {name}")
    tracer = _Tracer(_probe_all(model))
    try:
        graph = tracer.trace(model)
    except Exception as e:
        raise ModelError(
            f"cannot trace model {name} with torch.fx ({type(e).__name__}: {str(e).splitlines()[0]}); "
            "export it to ONNX and use predict_onnx / --onnx instead"
        ) from None
    gm = fx.GraphModule(tracer.root, graph)
    training = model.training
    model.eval()
    try:
        # ShapeProp prints the whole traceback of a failing layer itself; the user gets the one-line cause.
        with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):
            ShapeProp(gm).propagate(torch.randn(*input_shape))
    except Exception as e:
        cause = e.__cause__ or e
        raise ModelError(
            f"model {name} fails on an input of shape {tuple(input_shape)}: {type(cause).__name__}: "
            f"{str(cause).splitlines()[0] if str(cause) else ''}"
        ) from None
    finally:
        model.train(training)
    return _Converter(gm, tracer.acts).run()


def _meta(n: Any) -> TensorMetadata | None:
    m = n.meta.get("tensor_meta") if isinstance(n, fx.Node) else None
    return m if isinstance(m, TensorMetadata) else None


class _Converter:
    def __init__(self, gm: fx.GraphModule, acts: dict[str, str]) -> None:
        self.gm, self.acts = gm, acts
        self.alias: dict[str, str] = {}
        self.consts: set[str] = set()
        self.tuples: set[str] = set()
        self.nodes: list[Node] = []

    def tid(self, n: Any) -> str | None:
        """The tensor id of an fx argument, following shape-only aliases; None for non-tensors and constants."""
        if not isinstance(n, fx.Node) or _meta(n) is None or n.name in self.consts:
            return None
        return self.alias.get(n.name, n.name)

    def shape_of(self, n: fx.Node) -> tuple[int, ...]:
        m = _meta(n)
        return tuple(int(d) for d in m.shape) if m is not None else ()

    def emit(self, n: fx.Node, op: str, inputs: list[Any], label: str | None = None, **attrs: Any) -> None:
        ids = [t for t in (self.tid(a) for a in inputs) if t is not None]
        shapes = [self.shape_of(a) for a in inputs if self.tid(a) is not None]
        self.nodes.append(Node(label or self.label(n), op, ids, n.name, shapes, self.shape_of(n), attrs))

    def label(self, n: fx.Node) -> str:
        if n.op == "call_module":
            return str(n.target)
        stack = n.meta.get("nn_module_stack") or {}
        path = list(stack.values())[-1][0] if stack else ""
        return f"{path}.{n.name}" if path else n.name

    def free(self, n: fx.Node, src: Any) -> None:
        t = self.tid(src)
        if t is not None and _meta(n) is not None:
            self.alias[n.name] = t

    def run(self) -> list[Node]:
        for n in self.gm.graph.nodes:
            if n.op in ("placeholder", "output"):
                continue
            if n.op == "get_attr":
                self.consts.add(n.name)
                continue
            meta = n.meta.get("tensor_meta")
            if isinstance(meta, (tuple, list)) and any(isinstance(m, TensorMetadata) for m in meta):
                # An op with several tensor outputs (chunk, split, unbind): none has a LUT kind. Report the op
                # once; its outputs pass on as opaque tensors so that their consumers are still examined.
                self.tuples.add(n.name)
                what = f"tensor method .{n.target}()" if n.op == "call_method" else \
                    f"function {getattr(n.target, '__name__', n.target)}"
                self.nodes.append(Node(self.label(n), "unsupported", [], n.name, [], (), {"what": what}))
                continue
            if n.op == "call_function" and n.target is operator.getitem and getattr(n.args[0], "name", None) \
                    in self.tuples:
                continue
            if _meta(n) is None and n.op != "call_module":
                continue  # sizes, shapes, tuples of ints: no work at run time
            if n.op == "call_module":
                self.module(n, self.gm.get_submodule(str(n.target)))
            elif n.op == "call_function":
                self.function(n, n.target, n.args, n.kwargs)
            else:
                self.method(n, str(n.target), n.args, n.kwargs)
        return self.nodes

    # -- modules --------------------------------------------------------------------------------------------
    def module(self, n: fx.Node, m: nn.Module) -> None:
        x = n.args[0] if n.args else None
        if str(n.target) in self.acts:
            act = self.acts[str(n.target)]
            return self.free(n, x) if act == "linear" else self.emit(n, "act", [x], act=act)
        if isinstance(m, InvertedResidual):
            # The block carries its spec; it is priced at the shape it runs at here.
            _, c, h, w = self.shape_of(x)
            if c != m.spec.cin:
                return self.emit(n, "unsupported", [x], what=f"InvertedResidual for {m.spec.cin} channels run on {c}")
            return self.emit(n, "block", [x], spec=dataclasses.replace(m.spec, h=h, w=w))
        if isinstance(m, SqueezeExcite):
            _, c, h, w = self.shape_of(x)
            gate = "sigmoid" if isinstance(m.gate, nn.Sigmoid) else "hsigmoid"
            return self.emit(n, "block", [x], spec=OpSpec("se", c, h, w, hidden=m.reduce.out_channels, act=gate))
        if isinstance(m, ChannelShuffle):
            return self.emit(n, "shuffle", [x], groups=m.groups)
        if isinstance(m, GlobalAvgPool):
            return self.emit(n, "gap", [x])
        if isinstance(m, nn.Conv2d):
            return self.conv(n, x, m)
        if isinstance(m, nn.Linear):
            return self.linear(n, x, m.in_features, m.out_features)
        if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            return self.emit(n, "bn", [x])
        if type(m) in _ACT_MODULES:
            return self.emit(n, "act", [x], act=_ACT_MODULES[type(m)])
        if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            op = "maxpool" if isinstance(m, nn.MaxPool2d) else "avgpool"
            return self.pool(n, x, op, m.kernel_size, m.stride, m.padding, getattr(m, "dilation", 1), m.ceil_mode)
        if isinstance(m, nn.AdaptiveAvgPool2d):
            return self.adaptive(n, x, m.output_size)
        if isinstance(m, _FREE_MODULES):
            return self.free(n, x)
        self.emit(n, "unsupported", [x], what=f"{type(m).__module__}.{type(m).__name__}")

    def conv(self, n: fx.Node, x: Any, m: nn.Conv2d) -> None:
        k, s, d = m.kernel_size, m.stride, m.dilation
        pad = m.padding
        if isinstance(pad, str):
            pad = (k[0] // 2, k[1] // 2) if pad == "same" else (0, 0)
        why = None
        if k[0] != k[1] or s[0] != s[1] or pad[0] != pad[1]:
            why = f"non-square conv (kernel {k}, stride {s}, padding {pad})"
        elif d != (1, 1):
            why = f"dilated conv (dilation {d})"
        elif m.padding_mode != "zeros":
            why = f"conv with padding_mode {m.padding_mode!r}"
        if why:
            return self.emit(n, "unsupported", [x], what=why)
        self.emit(n, "conv", [x], cin=m.in_channels, cout=m.out_channels, kernel=k[0], stride=s[0],
                  padding=pad[0], groups=m.groups)

    def linear(self, n: fx.Node, x: Any, cin: int, cout: int) -> None:
        shape = self.shape_of(x)
        if any(d != 1 for d in shape[:-1]):
            return self.emit(n, "unsupported", [x], what=f"linear layer on a tensor of shape {shape}")
        self.emit(n, "linear", [x], cin=cin, cout=cout)

    def pool(self, n: fx.Node, x: Any, op: str, k: Any, s: Any, p: Any, d: Any, ceil: bool) -> None:
        def one(v: Any) -> int | None:
            v = tuple(v) if isinstance(v, (tuple, list)) else (v, v)
            return int(v[0]) if v[0] == v[1] else None

        k1, s1, p1, d1 = one(k), one(s if s not in (None, ()) else k), one(p), one(d)
        if None in (k1, s1, p1) or d1 != 1:
            return self.emit(n, "unsupported", [x], what=f"{op} with kernel {k}, stride {s}, padding {p}, dilation {d}")
        self.emit(n, op, [x], kernel=k1, stride=s1, padding=p1, ceil_mode=bool(ceil))

    def adaptive(self, n: fx.Node, x: Any, size: Any) -> None:
        size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
        if size == (1, 1):
            return self.emit(n, "gap", [x])
        self.emit(n, "unsupported", [x], what=f"adaptive average pool to {size}")

    # -- functions and methods ------------------------------------------------------------------------------
    def function(self, n: fx.Node, f: Any, args: tuple, kw: dict) -> None:
        if f in _ACT_FUNCS:
            return self.emit(n, "act", [args[0]], act=_ACT_FUNCS[f])
        if f in _FREE_FUNCS:
            return self.free(n, args[0])
        if f in (operator.add, operator.iadd, torch.add):
            return self.binary(n, "add", args)
        if f in (operator.mul, operator.imul, torch.mul):
            return self.binary(n, "mul", args)
        if f in (torch.mean,):
            return self.mean(n, args, kw)
        if f is torch.cat:
            return self.cat(n, args, kw)
        if f in (torch.transpose, torch.permute):
            return self.transpose(n, args[0], args[1:], f is torch.permute)
        if f is F.adaptive_avg_pool2d:
            return self.adaptive(n, args[0], args[1] if len(args) > 1 else kw.get("output_size"))
        if f in (F.max_pool2d, F.avg_pool2d):
            op = "maxpool" if f is F.max_pool2d else "avgpool"
            names = ["input", "kernel_size", "stride", "padding", "dilation" if op == "maxpool" else "ceil_mode",
                     "ceil_mode"]
            a = dict(zip(names, args))
            a.update(kw)
            return self.pool(n, args[0], op, a["kernel_size"], a.get("stride"), a.get("padding", 0),
                             a.get("dilation", 1) if op == "maxpool" else 1, a.get("ceil_mode", False))
        if f is operator.getitem and _meta(n) is not None:
            return self.emit(n, "unsupported", [args[0]], what="indexing or slicing a tensor")
        what = getattr(f, "__name__", str(f))
        self.emit(n, "unsupported", [a for a in args if isinstance(a, fx.Node)], what=f"function {what}")

    def method(self, n: fx.Node, name: str, args: tuple, kw: dict) -> None:
        if name in _ACT_METHODS:
            return self.emit(n, "act", [args[0]], act=_ACT_METHODS[name])
        if name in _FREE_METHODS:
            return self.free(n, args[0])
        if name in ("add", "add_"):
            return self.binary(n, "add", args)
        if name in ("mul", "mul_"):
            return self.binary(n, "mul", args)
        if name == "mean":
            return self.mean(n, args, kw)
        if name in ("transpose", "permute"):
            dims = args[1:] if name == "transpose" or not isinstance(args[1], (tuple, list)) else tuple(args[1])
            return self.transpose(n, args[0], dims, name == "permute")
        self.emit(n, "unsupported", [args[0]], what=f"tensor method .{name}()")

    def binary(self, n: fx.Node, op: str, args: tuple) -> None:
        tensors = [a for a in args[:2] if self.tid(a) is not None]
        if len(tensors) != 2:
            return self.emit(n, "unsupported", tensors, what=f"{op} with a constant")
        self.emit(n, op, tensors)

    def mean(self, n: fx.Node, args: tuple, kw: dict) -> None:
        x = args[0]
        dims = args[1] if len(args) > 1 else kw.get("dim")
        nd = len(self.shape_of(x))
        if dims is not None:
            dims = {int(d) % nd for d in (dims if isinstance(dims, (tuple, list)) else [dims])}
        if nd == 4 and dims == {2, 3}:
            return self.emit(n, "gap", [x])
        self.emit(n, "unsupported", [x], what=f"mean over dims {dims}")

    def cat(self, n: fx.Node, args: tuple, kw: dict) -> None:
        tensors = list(args[0])
        dim = args[1] if len(args) > 1 else kw.get("dim", 0)
        if int(dim) % max(1, len(self.shape_of(n))) != 1:
            return self.emit(n, "unsupported", tensors, what=f"concat along dim {dim}")
        self.emit(n, "cat", tensors)

    def transpose(self, n: fx.Node, x: Any, dims: Any, permute: bool) -> None:
        shape = self.shape_of(x)
        dims = tuple(int(d) % max(1, len(shape)) for d in dims)
        shuffle = len(shape) == 5 and (dims == (0, 2, 1, 3, 4) if permute else set(dims) == {1, 2})
        if not shuffle:
            return self.emit(n, "unsupported", [x], what=f"transpose/permute {dims} of a {len(shape)}-D tensor")
        _, g, cpg, h, w = shape
        t = self.tid(x)
        self.nodes.append(Node(self.label(n), "shuffle", [t] if t else [], n.name, [(1, g * cpg, h, w)],
                               (1, g * cpg, h, w), {"groups": g}))
