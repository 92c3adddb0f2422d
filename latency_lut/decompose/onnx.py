"""ONNX front end of the decomposition: an ONNX file -> :class:`ir.Node` list.

Shapes come from ONNX shape inference. Tensors computed only from constants and shapes (the ``Shape -> Gather ->
Concat -> Reshape`` chains an exporter emits for ``x.view(n, g, c // g, h, w)``) are bookkeeping, not work, and
are skipped; every node that touches the data is mapped or reported as unsupported.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from latency_lut.decompose.ir import DecomposedOp, ModelError, Node
from latency_lut.decompose.lower import lower


def _np() -> Any:
    import numpy

    return numpy

_FREE = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout", "Expand"}
_ACTS = {"Relu": "relu", "HardSwish": "hswish", "Sigmoid": "sigmoid"}
_ARITH = {"Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div"}


def _scalar(op: str, c: float, const_first: bool) -> Any:
    if const_first and op in ("Sub", "Div"):
        return (lambda a: c - a) if op == "Sub" else (lambda a: c / a)
    return {"Add": lambda a: a + c, "Sub": lambda a: a - c, "Mul": lambda a: a * c, "Div": lambda a: a / c}[op]


def onnx_graph(path: Path) -> list[Node]:
    import onnx
    from onnx import numpy_helper

    if Path(path).exists() and not Path(path).is_file():  # a pipe would block the read forever
        raise ModelError(f"ONNX file {path} is not a regular file (a folder, pipe or device); give an .onnx file")
    try:
        model = onnx.load(str(path))
    except FileNotFoundError:
        raise ModelError(f"ONNX file {path} does not exist") from None
    except Exception as e:
        raise ModelError(f"cannot read ONNX file {path}: {type(e).__name__}: {str(e).splitlines()[0]}") from None
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    defined = {*inits, *(i.name for i in g.input), ""}  # "" marks an optional input left out
    for idx, nd in enumerate(g.node):
        for x in nd.input:
            if x not in defined:  # skipping such a node would price it at 0 ms
                raise ModelError(f"ONNX file {path}: node {nd.name or idx} ({nd.op_type}) reads tensor {x!r}, which "
                                 "no graph input, initializer or earlier node defines; the graph is broken or not "
                                 "topologically sorted (check it with onnx.checker.check_model)")
        defined.update(nd.output)
    inputs = [i for i in g.input if i.name not in inits]
    if len(inputs) != 1:
        raise ModelError(f"ONNX file {path} has {len(inputs)} data inputs; only single-input models are supported")
    dims = inputs[0].type.tensor_type.shape.dim
    for i, d in enumerate(dims):
        if not d.HasField("dim_value"):
            if i != 0:
                raise ModelError(f"ONNX file {path}: input dimension {i} ({d.dim_param!r}) is symbolic; export the "
                                 "model with a fixed input shape")
            d.Clear()
            d.dim_value = 1  # a symbolic batch is priced at batch 1, like every LUT entry
    try:
        model = onnx.shape_inference.infer_shapes(model, data_prop=True)
        # Pads, shapes and scales an exporter computes from constants (torch's F.pad, TF "same" ports) become
        # constants, so that the ops using them get static shapes too.
        model = onnx.shape_inference.infer_shapes(_fold_constants(model), data_prop=True)
    except Exception as e:
        raise ModelError(f"ONNX shape inference failed for {path}: {str(e).splitlines()[0]}") from None
    shapes: dict[str, tuple[int, ...]] = {}
    for vi in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        dd = vi.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dd):
            shapes[vi.name] = tuple(int(d.dim_value) for d in dd)
    consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return _Converter(path, shapes, consts, inputs[0].name).run(model.graph.node)


def _fold_constants(model: Any) -> Any:
    """Evaluate every node whose inputs are all constants (or the static shape of a tensor) into initializers."""
    import numpy as np
    from onnx import numpy_helper
    from onnx.reference import ReferenceEvaluator

    g = model.graph
    consts: dict[str, Any] = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    shapes = {}
    for vi in [*g.input, *g.value_info]:
        dd = vi.type.tensor_type.shape.dim
        if dd and all(d.HasField("dim_value") for d in dd):
            shapes[vi.name] = [int(d.dim_value) for d in dd]
    folded: list[int] = []
    for idx, nd in enumerate(g.node):
        ins = [i for i in nd.input if i]
        try:
            if nd.op_type == "Shape" and ins and ins[0] in shapes and not nd.attribute:
                consts[nd.output[0]] = np.asarray(shapes[ins[0]], dtype=np.int64)
            elif all(i in consts for i in ins) and nd.domain in ("", "ai.onnx") and nd.op_type not in (
                    "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike"):
                outs = ReferenceEvaluator(nd).run(None, {i: consts[i] for i in ins})
                for name, v in zip(nd.output, outs):
                    consts[name] = np.asarray(v)
            else:
                continue
        except Exception:  # an op the reference evaluator lacks: leave it in the graph
            continue
        folded.append(idx)
    if not folded:
        return model
    keep = [nd for i, nd in enumerate(g.node) if i not in set(folded)]
    used = {i for nd in keep for i in nd.input} | {o.name for o in g.output}
    have = {t.name for t in g.initializer}
    new_inits = [numpy_helper.from_array(consts[o], o) for i in folded for o in g.node[i].output
                 if o in used and o not in have and o in consts]
    del g.node[:]
    g.node.extend(keep)
    g.initializer.extend(new_inits)
    return model


class _Converter:
    def __init__(self, path: Path, shapes: dict[str, tuple[int, ...]], consts: dict[str, Any], inp: str) -> None:
        self.path, self.shapes, self.consts = path, shapes, consts
        self.data = {inp}  # tensors that carry activations (vs. constants and shape arithmetic)
        self.alias: dict[str, str] = {}
        self.nodes: list[Node] = []

    def tid(self, name: str) -> str:
        return self.alias.get(name, name)

    def shape(self, name: str) -> tuple[int, ...]:
        if name not in self.shapes:
            raise ModelError(f"ONNX file {self.path}: shape of tensor {name!r} is unknown after shape inference")
        return self.shapes[name]

    def pads(self, x: str, pads: Any, k: int, s: int, d: int) -> tuple[int | None, bool]:
        """(padding, tf) of ONNX pads [top, left, bottom, right]: symmetric, TF "same", or (None, False)."""
        from latency_lut.ops import tf_same_pads

        t, l_, b, r = (int(v) for v in pads)
        if t == l_ == b == r:
            return t, False
        h, w = self.shape(x)[2:]
        if (t, b) == tf_same_pads(h, k, s, d) and (l_, r) == tf_same_pads(w, k, s, d):
            return 0, True
        return None, False

    def split(self, label: str, x: str, outs: list[str], a: dict[str, Any], all_in: list[str]) -> None:
        shp = self.shape(x)
        if len(shp) != 4 or int(a.get("axis", 0)) % 4 != 1:
            for o in outs:
                self.emit(label, "unsupported", [x], o, what=f"Split along axis {a.get('axis', 0)}")
            return
        lo = 0
        for o in outs:
            c = self.shape(o)[1]
            self.emit(f"{label}:{o}" if len(outs) > 1 else label, "slice", [x], o, start=lo, stop=lo + c)
            lo += c

    def slice(self, label: str, x: str, out: str, all_in: list[str]) -> None:
        shp, oshp = self.shape(x), self.shape(out)
        starts = self.const(all_in[1]) if len(all_in) > 1 else None
        axes = self.const(all_in[3]) if len(all_in) > 3 and all_in[3] else None
        steps = self.const(all_in[4]) if len(all_in) > 4 and all_in[4] else None
        if len(shp) == 4 and starts is not None and axes is not None and [int(v) % 4 for v in axes] == [1] and \
                (steps is None or [int(v) for v in steps] == [1]) and shp[2:] == oshp[2:]:
            lo = min(max(int(starts[0]), 0), shp[1])
            return self.emit(label, "slice", [x], out, start=lo, stop=lo + oshp[1])
        self.emit(label, "unsupported", [x], out, what="Slice other than a channel range")

    def run(self, graph_nodes: Any) -> list[Node]:
        from onnx import helper, numpy_helper

        for idx, nd in enumerate(graph_nodes):
            data_in = [x for x in nd.input if x in self.data]
            label = nd.name or f"{nd.op_type}_{idx}"
            if nd.op_type == "Constant":
                for a in nd.attribute:
                    if a.name == "value":
                        self.consts[nd.output[0]] = numpy_helper.to_array(a.t)
                continue
            if nd.op_type == "Identity" and nd.input[0] in self.consts:
                # torch.onnx routes shared (deduplicated) weights through Identity nodes
                self.consts[nd.output[0]] = self.consts[nd.input[0]]
                continue
            if not data_in or nd.op_type in ("Shape", "Size"):
                continue  # constants and shape arithmetic
            attrs = {a.name: helper.get_attribute_value(a) for a in nd.attribute}
            out = nd.output[0]
            self.data.update(o for o in nd.output if o)
            self.outputs = [o for o in nd.output if o]
            self.map(nd.op_type, label, data_in, out, attrs, list(nd.input))
        return self.nodes

    def emit(self, label: str, op: str, inputs: list[str], out: str, **attrs: Any) -> None:
        self.nodes.append(Node(label, op, [self.tid(x) for x in inputs], out, [self.shape(x) for x in inputs],
                               self.shape(out), attrs))

    def produced_by(self, name: str) -> str | None:
        t = self.tid(name)
        return next((n.op for n in reversed(self.nodes) if n.output == t), None)

    def const(self, name: str) -> Any:
        return self.consts.get(name)

    def map(self, op: str, label: str, xs: list[str], out: str, a: dict[str, Any], all_in: list[str]) -> None:
        x = xs[0]
        if op in _FREE:
            self.alias[out] = self.tid(x)
            return
        if op in _ACTS:
            return self.emit(label, "act", [x], out, act=_ACTS[op])
        if op == "HardSigmoid":
            al, be = float(a.get("alpha", 0.2)), float(a.get("beta", 0.5))
            return self.emit(label, "ew", [x], out, fn=lambda v: _np().clip(al * v + be, 0.0, 1.0),
                             what=f"HardSigmoid(alpha={al:g}, beta={be:g})")
        if op == "Clip":
            lo = self.const(all_in[1]) if len(all_in) > 1 and all_in[1] else a.get("min")
            hi = self.const(all_in[2]) if len(all_in) > 2 and all_in[2] else a.get("max")
            if (len(all_in) > 1 and all_in[1] and lo is None) or (len(all_in) > 2 and all_in[2] and hi is None):
                return self.emit(label, "unsupported", [x], out, what="Clip with computed bounds")
            lo_, hi_ = (None if v is None else float(v) for v in (lo, hi))
            return self.emit(label, "ew", [x], out, fn=lambda v: _np().clip(v, lo_, hi_), what=f"Clip({lo_}, {hi_})")
        if op == "Pad":
            pads = self.const(all_in[1]) if len(all_in) > 1 else a.get("pads")
            mode = a.get("mode", b"constant")
            mode = mode.decode() if isinstance(mode, bytes) else mode
            value = self.const(all_in[2]) if len(all_in) > 2 and all_in[2] else 0.0
            if pads is None or len(pads) != 8 or mode != "constant" or float(value) != 0.0 or \
                    any(int(v) for v in (pads[0], pads[1], pads[4], pads[5])) or len(all_in) > 3:
                return self.emit(label, "unsupported", [x], out, what=f"Pad {pads} mode {mode}")
            p = [int(v) for v in pads]
            return self.emit(label, "pad", [x], out, pads=(p[2], p[6], p[3], p[7]))
        if op == "Conv":
            k, s = a.get("kernel_shape", []), a.get("strides", [1, 1])
            pads, dil = a.get("pads", [0, 0, 0, 0]), a.get("dilations", [1, 1])
            w = self.const(all_in[1])
            if w is None or len(k) != 2 or k[0] != k[1] or s[0] != s[1] or dil[0] != dil[1] or \
                    a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
                return self.emit(label, "unsupported", [x], out,
                                 what=f"Conv kernel {k} strides {s} pads {pads} dilations {dil}")
            pad, tf = self.pads(x, pads, int(k[0]), int(s[0]), int(dil[0]))
            if pad is None:
                return self.emit(label, "unsupported", [x], out, what=f"Conv with asymmetric pads {pads}")
            return self.emit(label, "conv", [x], out, cin=self.shape(x)[1], cout=int(w.shape[0]), kernel=int(k[0]),
                             stride=int(s[0]), padding=pad, groups=int(a.get("group", 1)), dilation=int(dil[0]),
                             tf=tf)
        if op == "Gemm":
            if a.get("transA", 0):
                return self.emit(label, "unsupported", [x], out, what="Gemm with transA")
            return self.emit(label, "linear", [x], out, cin=self.shape(x)[-1], cout=self.shape(out)[-1])
        if op == "BatchNormalization":
            return self.emit(label, "bn", [x], out)
        if op == "MatMul":
            w = self.const(all_in[1])
            if w is None or w.ndim != 2:
                return self.emit(label, "unsupported", xs, out, what="MatMul of two data tensors")
            return self.emit(label, "linear", [x], out, cin=int(w.shape[0]), cout=int(w.shape[1]))
        if op == "Add" and len(xs) == 1 and self.produced_by(x) == "linear":
            self.alias[out] = self.tid(x)  # the bias of a MatMul-exported linear layer
            return
        if op in _ARITH:
            if len(xs) == 2:
                if op in ("Add", "Mul"):
                    return self.emit(label, op.lower(), xs, out)
                fn = (lambda u, v: u - v) if op == "Sub" else (lambda u, v: u / v)
                return self.emit(label, "ew", xs, out, fn=fn, what=f"{op} of two tensors")
            other = next(t for t in all_in if t != x)
            c = self.const(other)
            if c is None or _np().asarray(c).size != 1:
                return self.emit(label, "unsupported", xs, out, what=f"{op} with a constant tensor")
            cv = float(_np().asarray(c).reshape(()))
            return self.emit(label, "ew", [x], out, fn=_scalar(op, cv, all_in[0] == other),
                             what=f"{op} {cv:g} (arithmetic with a constant)")
        if op == "GlobalAveragePool":
            return self.emit(label, "gap", [x], out)
        if op == "ReduceMean":
            axes = a.get("axes")
            if axes is None and len(all_in) > 1:
                axes = self.const(all_in[1])
            nd = len(self.shape(x))
            if nd == 4 and axes is not None and {int(v) % nd for v in list(axes)} == {2, 3}:
                return self.emit(label, "gap", [x], out)
            return self.emit(label, "unsupported", [x], out, what=f"ReduceMean over axes {axes}")
        if op in ("MaxPool", "AveragePool"):
            k, s = a.get("kernel_shape", []), a.get("strides", [1, 1])
            pads, dil = a.get("pads", [0, 0, 0, 0]), a.get("dilations", [1, 1])
            pad, tf = (None, False) if len(k) != 2 or k[0] != k[1] or s[0] != s[1] or set(dil) != {1} else \
                self.pads(x, pads, int(k[0]), int(s[0]), 1)
            if pad is None:
                return self.emit(label, "unsupported", [x], out, what=f"{op} kernel {k} strides {s} pads {pads}")
            kind = "maxpool" if op == "MaxPool" else "avgpool"
            return self.emit(label, kind, [x], out, kernel=int(k[0]), stride=int(s[0]), padding=pad,
                             ceil_mode=bool(a.get("ceil_mode", 0)), tf=tf)
        if op == "Split":
            return self.split(label, x, self.outputs, a, all_in)
        if op == "Slice":
            return self.slice(label, x, out, all_in)
        if op == "Concat":
            if int(a.get("axis", 0)) % max(1, len(self.shape(out))) != 1 or len(xs) != len(all_in):
                return self.emit(label, "unsupported", xs, out, what=f"Concat along axis {a.get('axis')}")
            return self.emit(label, "cat", xs, out)
        if op == "Transpose":
            perm = list(a.get("perm", []))
            shp = self.shape(x)
            if len(shp) == 5 and perm == [0, 2, 1, 3, 4]:
                _, g, cpg, h, w = shp
                self.nodes.append(Node(label, "shuffle", [self.tid(x)], out, [(1, g * cpg, h, w)], (1, g * cpg, h, w),
                                       {"groups": g}))
                return
            return self.emit(label, "unsupported", [x], out, what=f"Transpose {perm} of a {len(shp)}-D tensor")
        self.emit(label, "unsupported", xs, out, what=f"ONNX op {op}")


def decompose_onnx(path: str | Path, known: Callable[[str], bool] = lambda k: False) -> list[DecomposedOp]:
    """The LUT ops of an ONNX model file (fixed input shape; a symbolic batch dimension is taken as 1)."""
    return lower(onnx_graph(Path(path)), known)
