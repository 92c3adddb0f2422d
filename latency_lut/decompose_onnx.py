"""ONNX front end of the decomposition: an ONNX file -> :class:`decompose.Node` list.

Shapes come from ONNX shape inference. Tensors computed only from constants and shapes (the ``Shape -> Gather ->
Concat -> Reshape`` chains an exporter emits for ``x.view(n, g, c // g, h, w)``) are bookkeeping, not work, and
are skipped; every node that touches the data is mapped or reported as unsupported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from latency_lut.decompose import ModelError, Node

_FREE = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout", "Expand"}
_ACTS = {"Relu": "relu", "HardSwish": "hswish", "HardSigmoid": "hsigmoid", "Sigmoid": "sigmoid"}


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
    except Exception as e:
        raise ModelError(f"ONNX shape inference failed for {path}: {str(e).splitlines()[0]}") from None
    shapes: dict[str, tuple[int, ...]] = {}
    for vi in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        dd = vi.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dd):
            shapes[vi.name] = tuple(int(d.dim_value) for d in dd)
    consts = {n: numpy_helper.to_array(t) for n, t in inits.items()}
    return _Converter(path, shapes, consts, inputs[0].name).run(model.graph.node)


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
            self.data.add(out)
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
        if op == "Clip":
            lo = self.const(all_in[1]) if len(all_in) > 1 and all_in[1] else a.get("min")
            hi = self.const(all_in[2]) if len(all_in) > 2 and all_in[2] else a.get("max")
            if lo is not None and hi is not None and float(lo) == 0.0 and float(hi) == 6.0:
                return self.emit(label, "act", [x], out, act="relu6")
            return self.emit(label, "unsupported", [x], out, what=f"Clip({lo}, {hi})")
        if op == "Conv":
            k, s = a.get("kernel_shape", []), a.get("strides", [1, 1])
            pads, dil = a.get("pads", [0, 0, 0, 0]), a.get("dilations", [1, 1])
            w = self.const(all_in[1])
            if w is None or len(k) != 2 or k[0] != k[1] or s[0] != s[1] or len(set(pads)) != 1 or set(dil) != {1}:
                return self.emit(label, "unsupported", [x], out,
                                 what=f"Conv kernel {k} strides {s} pads {pads} dilations {dil}")
            return self.emit(label, "conv", [x], out, cin=self.shape(x)[1], cout=int(w.shape[0]), kernel=int(k[0]),
                             stride=int(s[0]), padding=int(pads[0]), groups=int(a.get("group", 1)))
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
        if op in ("Add", "Mul"):
            if len(xs) != 2:
                return self.emit(label, "unsupported", xs, out, what=f"{op} with a constant")
            return self.emit(label, op.lower(), xs, out)
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
            if len(k) != 2 or k[0] != k[1] or s[0] != s[1] or len(set(pads)) != 1 or set(dil) != {1}:
                return self.emit(label, "unsupported", [x], out, what=f"{op} kernel {k} strides {s} pads {pads}")
            kind = "maxpool" if op == "MaxPool" else "avgpool"
            return self.emit(label, kind, [x], out, kernel=int(k[0]), stride=int(s[0]), padding=int(pads[0]),
                             ceil_mode=bool(a.get("ceil_mode", 0)))
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
