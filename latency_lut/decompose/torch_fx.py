"""Torch front end of the decomposition: ``torch.fx`` trace + shape propagation -> :class:`ir.Node` list.

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
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp, TensorMetadata

from latency_lut.blocks.layers import ArithHardSigmoid, ArithHardSwish, ChannelShuffle, GlobalAvgPool, SqueezeExcite
from latency_lut.blocks.mbconv import InvertedResidual
from latency_lut.decompose.ir import DecomposedOp, ModelError, Node, TraceError, UnsupportedLayerError
from latency_lut.decompose.lower import lower
from latency_lut.decompose.onnx import onnx_graph
from latency_lut.errors import ExportError
from latency_lut.export import export_module
from latency_lut.ops import OpSpec

_ACT_MODULES: dict[type, str] = {nn.ReLU: "relu", nn.ReLU6: "relu6", nn.Hardswish: "hswish",
                                 nn.Hardsigmoid: "hsigmoid", nn.Sigmoid: "sigmoid", nn.SiLU: "swish"}
_ACT_FUNCS: dict[Any, str] = {F.relu: "relu", torch.relu: "relu", F.relu6: "relu6", F.hardswish: "hswish",
                              F.hardsigmoid: "hsigmoid", torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid",
                              F.silu: "swish"}
_ACT_FUNCS.update({F.relu_: "relu", torch.relu_: "relu", F.silu: "swish", torch.sigmoid_: "sigmoid"})
_ACT_METHODS = {"relu": "relu", "relu_": "relu", "sigmoid": "sigmoid", "sigmoid_": "sigmoid"}
_ACT_REFS = {"relu": F.relu, "relu6": F.relu6, "hswish": F.hardswish, "hsigmoid": F.hardsigmoid,
             "sigmoid": torch.sigmoid, "swish": F.silu}
_FREE_MODULES = (nn.Flatten, nn.Unflatten, nn.Dropout, nn.Dropout2d, nn.Dropout1d, nn.AlphaDropout, nn.Identity)
# Scalar arithmetic, as numpy functions of the tensor operand; combined with activations they are recognized as
# the activation they compute (fold.fold_elementwise), e.g. x * relu6(x + 3) / 6 = hardswish.
_ARITH = {operator.add: "add", operator.iadd: "add", torch.add: "add", operator.sub: "sub", operator.isub: "sub",
          torch.sub: "sub", operator.mul: "mul", operator.imul: "mul", torch.mul: "mul", operator.truediv: "div",
          operator.itruediv: "div", torch.div: "div", torch.true_divide: "div"}
_ARITH_METHODS = {"add": "add", "add_": "add", "sub": "sub", "sub_": "sub", "mul": "mul", "mul_": "mul",
                  "div": "div", "div_": "div", "true_divide": "div", "rsub": "rsub"}
_CLAMP_FUNCS = {torch.clamp, torch.clip, F.hardtanh, F.hardtanh_, torch.clamp_min, torch.clamp_max}
_CLAMP_METHODS = {"clamp", "clamp_", "clip", "clip_", "clamp_min", "clamp_min_", "clamp_max", "clamp_max_"}
_SPLIT_FUNCS = {torch.split, torch.chunk, torch.tensor_split}
_SPLIT_METHODS = {"split", "chunk", "tensor_split"}
_FREE_FUNCS = {torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze, F.dropout, F.dropout2d, F.alpha_dropout,
               torch.clone, torch.dropout}
_FREE_METHODS = {"view", "reshape", "flatten", "contiguous", "expand", "expand_as", "squeeze", "unsqueeze",
                 "clone", "detach", "float", "view_as"}
_LEAF_BLOCKS = (InvertedResidual, SqueezeExcite, ChannelShuffle, GlobalAvgPool)


def _np() -> Any:
    import numpy

    return numpy


_TENSOR_FNS = {"sub": lambda a, b: a - b, "div": lambda a, b: a / b}


def _scalar_fn(op: str, c: float) -> Any:
    return {"add": lambda a: a + c, "sub": lambda a: a - c, "mul": lambda a: a * c, "div": lambda a: a / c,
            "rsub": lambda a: c - a, "rdiv": lambda a: c / a}[op]


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
        return isinstance(m, _LEAF_BLOCKS) or qualname in self.acts or _custom_layer(m) \
            or super().is_leaf_module(m, qualname)


def _custom_layer(m: nn.Module) -> bool:
    """A conv or pool subclass with its own forward (a TF "same" port pads inside it with shape arithmetic that
    torch.fx cannot trace): traced as one leaf, its padding read off its input and output shapes."""
    for base in (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d):
        if isinstance(m, base) and type(m).forward is not base.forward:
            return True
    return False


def _probe_all(model: nn.Module) -> dict[str, str]:
    """Parameter-free custom modules that fx cannot look into (an autograd Function, say), by what they compute.

    Probed before tracing: running a module while fx traces would re-enter the tracer. A module fx can trace is
    traced instead, so that an activation written as arithmetic is priced as the ops it runs.
    """
    acts: dict[str, str] = {}
    for qualname, m in model.named_modules():
        if qualname and not type(m).__module__.startswith("torch.nn") and not list(m.children()):
            act = probe_activation(m)
            if act is not None and not _traceable(m):
                acts[qualname] = act
    return acts


def _traceable(m: nn.Module) -> bool:
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            g = fx.Tracer().trace(m)
    except Exception:
        return False
    return not any(n.op == "call_function" and "apply" in getattr(n.target, "__name__", "") for n in g.nodes)


def torch_graph(model: nn.Module, input_shape: tuple[int, ...]) -> list[Node]:
    name = type(model).__name__
    if not isinstance(model, nn.Module):
        raise ModelError(f"expected a torch nn.Module, got {name}")
    tracer = _Tracer(_probe_all(model))
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            graph = tracer.trace(model)
    except Exception as e:
        raise TraceError(
            f"torch.fx cannot trace {name} ({type(e).__name__}: {(str(e).splitlines() or [''])[0]})"
        ) from None
    gm = fx.GraphModule(tracer.root, graph)
    training = model.training
    model.eval()
    try:
        # A failing op makes fx print the generated code's traceback on stderr; the error below names it instead.
        with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):
            _propagate(gm, input_shape)
    except Exception as e:
        cause = e.__cause__ or e
        raise ModelError(
            f"model {name} fails on an input of shape {tuple(input_shape)}: {type(cause).__name__}: "
            f"{str(cause).splitlines()[0] if str(cause) else ''}; "
            "give the model's input shape with --input-shape N,C,H,W"
        ) from None
    finally:
        model.train(training)
    return _Converter(gm, tracer.acts).run()


def _propagate(gm: fx.GraphModule, input_shape: tuple[int, ...]) -> None:
    """Shapes of every node, from one real forward pass at one thread: on a busy host, torch's thread pool spins
    against the neighbours (a 224x224 MixNet-S: 0.13 s at one thread, seconds at two), and fake tensors cost more
    in dispatch than these convolutions do."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ShapeProp(gm).propagate(torch.randn(*input_shape))
    finally:
        torch.set_num_threads(threads)


def _meta(n: Any) -> TensorMetadata | None:
    m = n.meta.get("tensor_meta") if isinstance(n, fx.Node) else None
    return m if isinstance(m, TensorMetadata) else None


class _Converter:
    def __init__(self, gm: fx.GraphModule, acts: dict[str, str]) -> None:
        self.gm, self.acts = gm, acts
        self.alias: dict[str, str] = {}
        self.consts: set[str] = set()
        self.tuples: set[str] = set()
        self.parts: dict[str, tuple[Any, list[tuple[int, int]]]] = {}  # split/chunk along channels -> bounds
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
            if isinstance(meta, (tuple, list)) and not isinstance(meta, TensorMetadata) and self.split(n):
                continue
            if isinstance(meta, (tuple, list)) and not isinstance(meta, TensorMetadata) and \
                    n.op == "call_function" and n.target is operator.getitem and \
                    getattr(n.args[0], "name", None) in self.tuples:
                self.tuples.add(n.name)  # a part of a reported op's nested outputs (an LSTM's (h, c))
                continue
            if isinstance(meta, (tuple, list)) and any(isinstance(m, TensorMetadata) for m in meta):
                # An op with several tensor outputs (chunk, split, unbind): none has a LUT kind. Report the op
                # once; its outputs pass on as opaque tensors so that their consumers are still examined.
                self.tuples.add(n.name)
                what = f"tensor method .{n.target}()" if n.op == "call_method" else \
                    f"{type(self.gm.get_submodule(str(n.target))).__name__} layer" if n.op == "call_module" else \
                    f"function {getattr(n.target, '__name__', n.target)}"
                self.nodes.append(Node(self.label(n), "unsupported", [], n.name, [], (), {"what": what}))
                continue
            if n.op == "call_function" and n.target is operator.getitem and getattr(n.args[0], "name", None) \
                    in self.parts:
                src, bounds = self.parts[n.args[0].name]
                lo, hi = bounds[int(n.args[1])]
                self.emit(n, "slice", [src], start=lo, stop=hi)
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

    def split(self, n: fx.Node) -> bool:
        """chunk/split of an image tensor along channels: each part becomes a ``slice`` when it is used."""
        is_split = (n.op == "call_function" and n.target in _SPLIT_FUNCS) or \
            (n.op == "call_method" and n.target in _SPLIT_METHODS)
        if not is_split or not n.args or self.tid(n.args[0]) is None:
            return False
        dim = n.args[2] if len(n.args) > 2 else n.kwargs.get("dim", 0)
        shape = self.shape_of(n.args[0])
        if len(shape) != 4 or int(dim) % 4 != 1:
            return False
        bounds, lo = [], 0
        for m in n.meta["tensor_meta"]:
            c = int(m.shape[1])
            bounds.append((lo, lo + c))
            lo += c
        self.parts[n.name] = (n.args[0], bounds)
        return True

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
            # the registry's own module: its gate and inner activation are the modules it was built with
            names = {**_ACT_MODULES, ArithHardSigmoid: "hsigmoid_arith", ArithHardSwish: "hswish_arith",
                     nn.Identity: "linear"}
            return self.emit(n, "block", [x], spec=OpSpec("se", c, h, w, hidden=m.reduce.out_channels,
                                                          act=names[type(m.gate)], se_act=names[type(m.relu)]))
        if isinstance(m, ChannelShuffle):
            return self.emit(n, "shuffle", [x], groups=m.groups)
        if isinstance(m, GlobalAvgPool):
            return self.emit(n, "gap", [x])
        if isinstance(m, nn.Conv2d):
            return self.conv(n, x, m, custom=_custom_layer(m))
        if isinstance(m, nn.Linear):
            return self.linear(n, x, m.in_features, m.out_features)
        if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            return self.emit(n, "bn", [x])
        if type(m) in _ACT_MODULES:
            return self.emit(n, "act", [x], act=_ACT_MODULES[type(m)])
        if isinstance(m, nn.Hardtanh):
            return self.clamp(n, x, m.min_val, m.max_val)
        if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            op = "maxpool" if isinstance(m, nn.MaxPool2d) else "avgpool"
            return self.pool(n, x, op, m.kernel_size, m.stride, m.padding, getattr(m, "dilation", 1), m.ceil_mode,
                             custom=_custom_layer(m))
        if isinstance(m, nn.AdaptiveAvgPool2d):
            return self.adaptive(n, x, m.output_size)
        if isinstance(m, _FREE_MODULES):
            return self.free(n, x)
        self.emit(n, "unsupported", [x], what=f"{type(m).__module__}.{type(m).__name__}")

    def conv(self, n: fx.Node, x: Any, m: nn.Conv2d, custom: bool = False) -> None:
        k, s, d = m.kernel_size, m.stride, m.dilation
        pad = m.padding
        if isinstance(pad, str):
            pad = tuple(d_ * (k_ // 2) for d_, k_ in zip(d, k)) if pad == "same" else (0, 0)
        why = None
        if k[0] != k[1] or s[0] != s[1] or pad[0] != pad[1] or d[0] != d[1]:
            why = f"non-square conv (kernel {k}, stride {s}, padding {pad}, dilation {d})"
        elif m.padding_mode != "zeros":
            why = f"conv with padding_mode {m.padding_mode!r}"
        if why:
            return self.emit(n, "unsupported", [x], what=why)
        tf = custom and self._pads_itself(x, n, k[0], s[0], pad[0], d[0])
        if custom and not tf and not self._plain_shape(x, n, k[0], s[0], pad[0], d[0]):
            return self.emit(n, "unsupported", [x], what=f"{type(m).__name__} (a conv with its own forward)")
        self.emit(n, "conv", [x], cin=m.in_channels, cout=m.out_channels, kernel=k[0], stride=s[0],
                  padding=pad[0], groups=m.groups, dilation=d[0], tf=tf)

    def _plain_shape(self, x: Any, n: fx.Node, k: int, s: int, p: int, d: int) -> bool:
        from latency_lut.ops import conv_out

        return self.shape_of(n)[2:] == tuple(conv_out(v, k, s, p, d) for v in self.shape_of(x)[2:])

    def _pads_itself(self, x: Any, n: fx.Node, k: int, s: int, p: int, d: int) -> bool:
        """A conv/pool subclass whose output has the TF "same" size (ceil(size / stride)) while its own padding
        would give another: it pads itself the TF way."""
        return p == 0 and not self._plain_shape(x, n, k, s, p, d) and \
            self.shape_of(n)[2:] == tuple(-(-v // s) for v in self.shape_of(x)[2:])

    def linear(self, n: fx.Node, x: Any, cin: int, cout: int) -> None:
        shape = self.shape_of(x)
        if any(d != 1 for d in shape[:-1]):
            return self.emit(n, "unsupported", [x], what=f"linear layer on a tensor of shape {shape}")
        self.emit(n, "linear", [x], cin=cin, cout=cout)

    def pool(self, n: fx.Node, x: Any, op: str, k: Any, s: Any, p: Any, d: Any, ceil: bool,
             custom: bool = False) -> None:
        def one(v: Any) -> int | None:
            v = tuple(v) if isinstance(v, (tuple, list)) else (v, v)
            return int(v[0]) if v[0] == v[1] else None

        k1, s1, p1, d1 = one(k), one(s if s not in (None, ()) else k), one(p), one(d)
        if None in (k1, s1, p1) or d1 != 1:
            return self.emit(n, "unsupported", [x], what=f"{op} with kernel {k}, stride {s}, padding {p}, dilation {d}")
        tf = custom and self._pads_itself(x, n, k1, s1, p1, 1)  # type: ignore[arg-type]
        self.emit(n, op, [x], kernel=k1, stride=s1, padding=p1, ceil_mode=bool(ceil), tf=tf)

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
        if f in _ARITH:
            return self.binary(n, _ARITH[f], args)
        if f in _CLAMP_FUNCS:
            return self.clamp_call(n, f, args, kw)
        if f is F.pad:
            return self.pad(n, args, kw)
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
            return self.getitem(n, args[0], args[1])
        what = getattr(f, "__name__", str(f))
        self.emit(n, "unsupported", [a for a in args if isinstance(a, fx.Node)], what=f"function {what}")

    def method(self, n: fx.Node, name: str, args: tuple, kw: dict) -> None:
        if name in _ACT_METHODS:
            return self.emit(n, "act", [args[0]], act=_ACT_METHODS[name])
        if name in _FREE_METHODS:
            return self.free(n, args[0])
        if name in _ARITH_METHODS:
            return self.binary(n, _ARITH_METHODS[name], args)
        if name in _CLAMP_METHODS:
            return self.clamp_call(n, name, args, kw)
        if name == "mean":
            return self.mean(n, args, kw)
        if name in ("transpose", "permute"):
            dims = args[1:] if name == "transpose" or not isinstance(args[1], (tuple, list)) else tuple(args[1])
            return self.transpose(n, args[0], dims, name == "permute")
        self.emit(n, "unsupported", [args[0]], what=f"tensor method .{name}()")

    def binary(self, n: fx.Node, op: str, args: tuple) -> None:
        a, b = args[0], args[1] if len(args) > 1 else None
        tensors = [t for t in (a, b) if self.tid(t) is not None]
        if len(tensors) == 2:
            if op in ("add", "mul"):
                return self.emit(n, op, tensors)
            return self.emit(n, "ew", tensors, fn=_TENSOR_FNS[op], what=f"{op} of two tensors")
        if len(tensors) == 1 and isinstance(a if tensors[0] is b else b, (int, float)):
            c = float(a if tensors[0] is b else b)
            if op == "rsub" or (op in ("sub", "div") and tensors[0] is b):
                op = "rsub" if op in ("sub", "rsub") else "rdiv"
            return self.emit(n, "ew", tensors, fn=_scalar_fn(op, c), what=f"{op} {c:g} (arithmetic with a constant)")
        self.emit(n, "unsupported", tensors, what=f"{op} with a constant tensor")

    def clamp_call(self, n: fx.Node, f: Any, args: tuple, kw: dict) -> None:
        name = f if isinstance(f, str) else f.__name__
        hardtanh = name.startswith("hardtanh")
        lo = args[1] if len(args) > 1 else kw.get("min_val" if hardtanh else "min", -1.0 if hardtanh else None)
        hi = args[2] if len(args) > 2 else kw.get("max_val" if hardtanh else "max", 1.0 if hardtanh else None)
        if name.startswith("clamp_min"):
            lo, hi = (args[1] if len(args) > 1 else kw.get("min")), None
        elif name.startswith("clamp_max"):
            lo, hi = None, (args[1] if len(args) > 1 else kw.get("max"))
        self.clamp(n, args[0], lo, hi)

    def clamp(self, n: fx.Node, x: Any, lo: Any, hi: Any) -> None:
        if any(v is not None and not isinstance(v, (int, float)) for v in (lo, hi)):
            return self.emit(n, "unsupported", [x], what="clamp to tensor bounds")
        lo_, hi_ = (None if v is None else float(v) for v in (lo, hi))
        self.emit(n, "ew", [x], fn=lambda a: _np().clip(a, lo_, hi_), what=f"clamp({lo_}, {hi_})")

    def pad(self, n: fx.Node, args: tuple, kw: dict) -> None:
        x = args[0]
        pads = list(args[1] if len(args) > 1 else kw.get("pad"))
        mode = args[2] if len(args) > 2 else kw.get("mode", "constant")
        value = args[3] if len(args) > 3 else kw.get("value", None)
        if mode != "constant" or value not in (None, 0, 0.0) or len(pads) not in (2, 4) or \
                not all(isinstance(p, int) for p in pads):
            return self.emit(n, "unsupported", [x], what=f"F.pad {pads} mode {mode!r} value {value}")
        left, right, top, bottom = (pads + [0, 0])[:4]
        self.emit(n, "pad", [x], pads=(top, bottom, left, right))

    def getitem(self, n: fx.Node, x: Any, idx: Any) -> None:
        """``x[:, a:b]``: a channel slice; anything else is unsupported."""
        shape = self.shape_of(x)
        idx = idx if isinstance(idx, tuple) else (idx,)
        full = slice(None, None, None)
        if len(shape) == 4 and len(idx) >= 2 and idx[0] == full and isinstance(idx[1], slice) and \
                idx[1].step in (None, 1) and all(i == full for i in idx[2:]):
            lo, hi, _ = idx[1].indices(shape[1])
            return self.emit(n, "slice", [x], start=lo, stop=hi)
        self.emit(n, "unsupported", [x], what="indexing or slicing a tensor")

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


def decompose_module(model: Any, input_shape: tuple[int, ...], known: Callable[[str], bool] = lambda k: False,
                     notes: list[str] | None = None) -> list[DecomposedOp]:
    """The LUT ops of a torch module run on one input of ``input_shape`` (NCHW, batch 1).

    When torch.fx cannot trace the module (control flow on tensors), it is exported to ONNX and that graph is
    decomposed instead; a line saying so is appended to ``notes``.
    """
    if len(input_shape) < 2 or input_shape[0] != 1:
        raise ModelError(f"input shape {tuple(input_shape)} must have batch 1, e.g. (1, 3, 224, 224)")
    try:
        graph = torch_graph(model, input_shape)
    except TraceError as e:
        graph = _onnx_fallback(model, input_shape, e)
        try:
            ops = lower(graph, known)
        except UnsupportedLayerError as err:  # say why the ONNX graph was read at all
            raise UnsupportedLayerError(f"{e}; in its ONNX export instead: {err}", err.layers) from None
        if notes is not None:
            notes.append(f"{e}; decomposed its ONNX export instead")
        return ops
    return lower(graph, known)


def _onnx_fallback(model: Any, input_shape: tuple[int, ...], why: TraceError) -> list[Node]:
    with tempfile.TemporaryDirectory(prefix="fbnet-lut-fx-") as d:
        try:
            path = export_module(model, input_shape, "onnx", Path(d) / f"{type(model).__name__}.onnx")
        except ExportError as e:
            raise ModelError(f"{why}, and the ONNX export it falls back to failed: {e}") from None
        return onnx_graph(path)
