"""Whole-model latency from a LUT: the sum of an architecture's ops, with a per-layer breakdown.

Four entry points, one pricing rule (the sum of LUT medians):

- :func:`predict` -- one architecture of the LUT's search space, with a per-layer breakdown;
- :func:`predict_batch` -- many architectures as an integer array, vectorized (millions per second);
- :func:`predict_module` -- any torch ``nn.Module``, decomposed into LUT ops (``latency_lut.decompose``);
- :func:`predict_onnx` -- the same for an ONNX file.

An op the LUT does not hold is an error that lists every missing key; it is never counted as zero. Given a
``measure`` callback (``latency_lut.extend.measurer``), the missing ops are measured on the LUT's device instead. An
identity skip is the one op that costs nothing by construction, and it is shown as such in the breakdown (unless
the LUT holds a price for it: imported tables whose source timed identities, as HW-NAS-Bench's did).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from latency_lut.blocks.base import WEIGHT_BYTES
from latency_lut.calibration import calibrated_total, from_header
from latency_lut.errors import ArchitectureError, LUTFormatError, UnknownOpError
from latency_lut.lut import LUT
from latency_lut.ops import OpSpec
from latency_lut.spaces import Architecture, SearchSpace, from_description, get_space

if TYPE_CHECKING:  # numpy is imported where used, so that ``import latency_lut`` stays fast
    import numpy as np

    from latency_lut.decompose import DecomposedOp

# Measures ops a LUT lacks and adds them to it (``latency_lut.extend.measurer``); prediction itself never measures.
Measurer = Callable[[LUT, Sequence[OpSpec]], object]


@dataclass(frozen=True)
class OpCost:
    label: str
    choice: str
    key: str
    ms: float
    p10: float
    p90: float
    flops: int
    flagged: bool = False
    note: str = ""  # e.g. "fallback: primitive" for an op a block pattern did not absorb


@dataclass(frozen=True)
class Prediction:
    arch: str
    choices: tuple[str, ...]
    total_ms: float
    p10_ms: float
    p90_ms: float
    flops: int
    ops: tuple[OpCost, ...]
    raw_total_ms: float | None = None  # the plain sum of medians; total_ms differs when the LUT is calibrated
    notes: tuple[str, ...] = ()  # how the model was read (e.g. the ONNX fallback of an untraceable module)

    def to_dict(self) -> dict[str, Any]:
        return {"arch": self.arch, "choices": list(self.choices), "total_ms": self.total_ms,
                "p10_ms": self.p10_ms, "p90_ms": self.p90_ms, "flops": self.flops,
                "raw_total_ms": self.raw_total_ms, "notes": list(self.notes), "ops": [asdict(o) for o in self.ops]}

    def to_dataframe(self):  # -> pandas.DataFrame
        import pandas as pd

        df = pd.DataFrame([asdict(o) for o in self.ops])
        df["share"] = df["ms"] / self.total_ms if self.total_ms > 0 else 0.0
        return df


def space_of(lut: LUT) -> SearchSpace:
    """The search space a LUT was built for, from its header (the embedded definition, else the space's name)."""
    sp = lut.header.get("space") or {}
    try:
        return from_description(sp, source=f"{lut.name} (header field 'space')")
    except (KeyError, TypeError, ValueError):
        raise LUTFormatError(f"{lut.name}: header field 'space' does not name a search space") from None


def check_space(lut: LUT, space: SearchSpace) -> None:
    """A LUT serves ``space`` only if it was built for the same definition at the same resolution and width."""
    lsp = space_of(lut)
    if lsp.id != space.id:
        raise LUTFormatError(
            f"{lut.name} was built for {lsp.id}, not {space.id}; build a LUT for that space with "
            f"'fbnet-lut build --space {space.source or space.name} --resolution {space.resolution} "
            f"--width {space.width:g}'"
        )
    embedded = (lut.header.get("space") or {}).get("definition")
    if embedded and lsp.fingerprint != space.fingerprint:
        raise LUTFormatError(
            f"{lut.name} embeds a definition of space {lsp.name} that differs from {space.source or space.name}; "
            "use the LUT's own space (omit --space) or rebuild the LUT for this definition"
        )


def resolve_space(lut: LUT, space: str | Path | SearchSpace | None = None) -> SearchSpace:
    """The space to use with ``lut``: its own (embedded in its header), or ``space`` -- a name, a space file or a
    :class:`SearchSpace` -- which must be the one the LUT was built for (else an error naming both)."""
    own = space_of(lut)
    if space is None:
        return own
    if not isinstance(space, SearchSpace):
        space = get_space(space, own.resolution, own.width)
    check_space(lut, space)
    return space


def predict(lut: LUT, arch: str | Architecture | Sequence[int | str], space: SearchSpace | None = None) -> Prediction:
    """Predicted latency (ms) of one architecture: the sum of the LUT medians of its ops."""
    if space is None:
        space = space_of(lut)
    else:
        check_space(lut, space)
    a = space.parse_arch(arch)
    rows = space.arch_ops(a)
    missing = sorted({spec.key for _, _, spec in rows if not spec.is_identity and spec.key not in lut})
    if missing:
        raise UnknownOpError(
            f"{lut.name} lacks {len(missing)} op(s) of {a.name}: {', '.join(missing)}; rebuild the LUT for this "
            "space with 'fbnet-lut build' (it measures only what is missing)", missing,
        )
    specs = [spec for _, _, spec in rows]
    ops = [_op_cost(lut, label, choice, spec) for label, choice, spec in rows]
    return _prediction(lut, a.name, tuple(space.choice_names(a)), specs, ops)


def _op_cost(lut: LUT, label: str, choice: str, spec: OpSpec, note: str = "") -> OpCost:
    # An identity costs nothing unless the LUT prices it (an imported table whose source timed its identities).
    if spec.is_identity and spec.key not in lut:
        return OpCost(label, choice, spec.key, 0.0, 0.0, 0.0, 0)
    e = lut[spec.key]
    return OpCost(label, choice, spec.key, e.stats.median, e.stats.p10, e.stats.p90, spec.flops, e.flagged, note)


def _prediction(lut: LUT, name: str, choices: tuple[str, ...], specs: Sequence[OpSpec],
                ops: Sequence[OpCost]) -> Prediction:
    """The one place every entry point sums its ops and applies the LUT's calibration (calibration.py).

    Without a calibration the total is the plain sum of medians; with one, p10/p90 are scaled alike and the
    plain sum stays in ``raw_total_ms``.
    """
    raw = sum(o.ms for o in ops)
    total = calibrated_total(lut, [(spec, o.ms) for spec, o in zip(specs, ops, strict=True)], raw)
    scale = total / raw if raw > 0 else 1.0
    return Prediction(
        arch=name, choices=choices, total_ms=total,
        p10_ms=scale * sum(o.p10 for o in ops), p90_ms=scale * sum(o.p90 for o in ops),
        flops=sum(o.flops for o in ops), ops=tuple(ops), raw_total_ms=raw,
    )


# ---- batch prediction over the search space ---------------------------------------------------------------
@dataclass(frozen=True)
class ArchTable:
    """A LUT compiled for one search space: ``table[l, c]`` is the latency (ms) of candidate ``c`` at layer ``l``
    (0 for an identity skip), ``fixed`` the stem, head, pool and classifier together.

    The head is the space's default width: a searched architecture has no head of its own (FBNet-A's 1504-wide
    head belongs to that named model only), so every row of the table shares one fixed cost.
    """

    space: SearchSpace
    table: np.ndarray  # float64 [layers, candidates]
    fixed: float
    identity: np.ndarray  # bool [layers, candidates]: structurally zero, not measured
    head: int
    valid: np.ndarray | None = None  # bool [layers, candidates]: False past the end of a layer's shorter list

    def __post_init__(self) -> None:
        if self.valid is None:
            import numpy as np

            object.__setattr__(self, "valid", np.ones(self.table.shape, dtype=bool))

    def predict(self, archs: np.ndarray) -> np.ndarray:
        """Latency (ms) of each row of an integer array ``[n, layers]`` (or one ``[layers]`` architecture)."""
        import numpy as np

        a = np.asarray(archs)
        single = a.ndim == 1
        a = _check_shape(a[None] if single else a, self.table.shape)
        out = np.empty(a.shape[0])
        # Chunks that stay in cache, one gather per layer over a contiguous column: ~10x faster than one fancy
        # index over the whole [n, layers] array, which is memory-bound.
        for start in range(0, a.shape[0], _CHUNK):
            chunk = a[start:start + _CHUNK]
            _check_range(chunk, self.table.shape[1], start, self.valid)
            cols = np.ascontiguousarray(chunk.T)
            acc = np.full(chunk.shape[0], self.fixed)
            for l in range(self.table.shape[0]):
                acc += self.table[l].take(cols[l], mode="clip")  # range already checked
            out[start:start + _CHUNK] = acc
        return out


_CHUNK = 8192


def _check_shape(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    layers = shape[0]
    if a.dtype.kind not in "iu":
        raise ArchitectureError(f"architectures must be an integer array of candidate indices, got dtype {a.dtype}")
    if a.ndim != 2 or a.shape[1] != layers:
        raise ArchitectureError(
            f"architectures have shape {a.shape}; expected (n, {layers}): one candidate index per layer per row"
        )
    return a


def _check_range(a: np.ndarray, cands: int, offset: int, valid: np.ndarray | None = None) -> None:
    import numpy as np

    if a.size and (a.min() < 0 or a.max() >= cands):
        bad = np.argwhere((a < 0) | (a >= cands))[0]
        raise ArchitectureError(
            f"architecture row {offset + bad[0]}, layer {bad[1] + 1}: candidate index {a[bad[0], bad[1]]} is out "
            f"of range 0-{cands - 1}"
        )
    if valid is not None and a.size and not valid.all():
        counts = valid.sum(axis=1)
        over = a >= counts[None, :]
        if over.any():
            r, l = np.argwhere(over)[0]
            raise ArchitectureError(
                f"architecture row {offset + r}, layer {l + 1}: candidate index {a[r, l]} is out of range "
                f"0-{counts[l] - 1} (that layer offers {counts[l]} candidates)"
            )


def arch_table(lut: LUT, space: SearchSpace | None = None, head: int | None = None) -> ArchTable:
    """Compile ``lut`` into an :class:`ArchTable` for ``space`` (default: the LUT's own space).

    Raises :class:`UnknownOpError` listing every op the space needs that the LUT lacks, and
    :class:`LUTFormatError` for a latency that is NaN, infinite or negative (possible in a LUT made in memory).
    """
    if space is None:
        space = space_of(lut)
    else:
        check_space(lut, space)
    import numpy as np

    layers = space.layers()
    specs = [[space.candidate_spec(l, c) for c in range(len(l.candidates))] for l in layers]
    tail = [*space.stem_specs(), *space.tail_specs(head)]
    needed = [s for row in specs for s in row if not s.is_identity] + tail
    missing = sorted({s.key for s in needed if s.key not in lut})
    if missing:
        raise UnknownOpError(
            f"{lut.name} lacks {len(missing)} op(s) of space {space.id}: {', '.join(missing[:8])}"
            f"{' ...' if len(missing) > 8 else ''}; complete it with 'fbnet-lut build' for that space", missing,
        )
    cal = from_header(lut.header, lut.name)

    def cost(spec: OpSpec) -> float:
        if spec.is_identity and spec.key not in lut:
            return 0.0
        ms = _checked_ms(lut, spec.key)
        return ms if cal is None else cal.op_ms(spec, ms)

    table = np.zeros((len(layers), space.num_candidates))
    identity = np.zeros(table.shape, dtype=bool)
    valid = np.zeros(table.shape, dtype=bool)
    for i, row in enumerate(specs):
        for j, spec in enumerate(row):
            identity[i, j] = spec.is_identity
            valid[i, j] = True
            table[i, j] = cost(spec)
    fixed = sum(cost(s) for s in tail) + (cal.const_ms if cal is not None else 0.0)
    return ArchTable(space, table, fixed, identity, head or space.head, valid)


def _checked_ms(lut: LUT, key: str) -> float:
    v = lut[key].stats.median
    if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
        raise LUTFormatError(
            f"{lut.name}: entry {key!r} has latency {v}; latencies must be finite and non-negative -- re-measure it "
            "with 'fbnet-lut build'"
        )
    return float(v)


def predict_batch(lut: LUT | ArchTable, archs: np.ndarray, space: SearchSpace | None = None) -> np.ndarray:
    """Latency (ms) of every row of an integer array ``[n, layers]`` of candidate indices, vectorized.

    Pass an :class:`ArchTable` (from :func:`arch_table`) instead of the LUT to skip compiling it on each call.
    Equals ``predict(lut, row).total_ms`` for every row (up to float summation order).
    """
    table = lut if isinstance(lut, ArchTable) else arch_table(lut, space)
    return table.predict(archs)


# ---- arbitrary models ---------------------------------------------------------------------------------------
def predict_module(lut: LUT, model: Any, input_shape: Sequence[int] | None = None, *, measure: Measurer | None = None,
                   name: str | None = None) -> Prediction:
    """Predicted latency of a torch ``nn.Module``: its layers decomposed into LUT ops, summed.

    ``input_shape`` is NCHW with batch 1; default ``(1, C, R, R)`` with C the input channels of the model's first
    conv and R the LUT space's resolution. Blocks of
    the search space are priced as whole blocks (their inner convs are not counted again); see
    ``latency_lut.decompose`` for what else is recognized. Ops the LUT lacks raise :class:`UnknownOpError` listing
    them, unless a ``measure`` callback is given (``latency_lut.extend.measurer(store)``) -- then they are measured
    on the LUT's device, added to the store and to ``lut`` (in memory; save it with ``lut.save()``), and the
    prediction completes.
    """
    from latency_lut.decompose.torch_fx import decompose_module
    from latency_lut.models import infer_input_shape

    if input_shape is None:
        input_shape = infer_input_shape(model, space_of(lut).resolution)
    notes: list[str] = []
    ops = decompose_module(model, tuple(input_shape), known=lut.__contains__, notes=notes)
    return _price(lut, ops, name or type(model).__name__, measure, notes)


def predict_onnx(lut: LUT, path: str | Path, *, measure: Measurer | None = None) -> Prediction:
    """Predicted latency of an ONNX model file; same rules as :func:`predict_module`."""
    from latency_lut.decompose.onnx import decompose_onnx

    ops = decompose_onnx(path, known=lut.__contains__)
    return _price(lut, ops, Path(path).name, measure)


def _price(lut: LUT, ops: Sequence[DecomposedOp], name: str, measure: Measurer | None,
           notes: Sequence[str] = ()) -> Prediction:
    missing = list(dict.fromkeys(o.spec.key for o in ops if not o.spec.is_identity and o.spec.key not in lut))
    if missing and measure is not None:
        measure(lut, [OpSpec.from_key(k) for k in missing])
        missing = [k for k in missing if k not in lut]
    if missing:
        raise UnknownOpError(
            f"{lut.name} lacks {len(missing)} op(s) of {name}: {', '.join(missing)}; measure them on the LUT's "
            "device with --measure-missing (predict_module(..., measure=latency_lut.extend.measurer(store)))"
            + "".join(f" [{n}]" for n in notes), missing,
        )
    pred = _prediction(lut, name, (), [o.spec for o in ops],
                       [_op_cost(lut, o.label, o.desc, o.spec, o.note) for o in ops])
    cached = cache_resident_note(lut, [o.spec for o in ops])
    return replace(pred, notes=(*notes, *([cached] if cached else [])))


# A fc layer timed over copies of itself on this project's host (32 MiB L3) stayed as fast as one copy up to 12 MiB
# of weights in all and was 3x slower from 24 MiB on; among 12 zoo models only MobileNetV3-Small (9.7 MiB) ran
# faster back to back than with cold weights (by 10-12%; the others within 2%).
CACHE_RESIDENT_SHARE = 1 / 3


def cache_resident_note(lut: LUT, specs: Sequence[OpSpec]) -> str:
    """A note for a model whose weights fit in a third of the LUT device's last-level cache: called back to back,
    it may run faster than its price, which has its weights come from memory as a phone's cache makes them."""
    llc = (lut.header.get("device_info") or {}).get("llc_bytes")
    if not isinstance(llc, int) or llc <= 0:
        return ""
    weights = sum(s.params for s in specs if not s.is_identity) * WEIGHT_BYTES.get(lut.header.get("dtype", "fp32"), 4)
    if weights > CACHE_RESIDENT_SHARE * llc:
        return ""
    return (f"its {weights / 2**20:.1f} MiB of weights fit in the device's {llc / 2**20:.0f} MiB last-level cache: "
            "called back to back it can run faster than this price, which has its weights come from memory; "
            "'fbnet-lut measure --weights cold' times it as priced")
