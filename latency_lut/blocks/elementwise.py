"""Ops without multiply-adds of their own: ``add``, ``act``, ``bn``, ``concat``, ``slice``."""

from __future__ import annotations

from latency_lut.blocks.base import ACTS, OUT, Kind, Spec, register


def _build_add(s: Spec):  # -> nn.Module
    from latency_lut.blocks.layers import WithConstant

    return WithConstant("add", s.input_shape, s.activation)


def _build_concat(s: Spec):  # -> nn.Module
    from latency_lut.blocks.layers import WithConstant

    return WithConstant("concat", (1, s.cout - s.cin, s.h, s.w))


def _build_bn(s: Spec):  # -> nn.Module
    from torch import nn

    from latency_lut.blocks.layers import activation

    return nn.Sequential(nn.BatchNorm2d(s.cin), activation(s.activation))


def _build_act(s: Spec):  # -> nn.Module
    from latency_lut.blocks.layers import activation

    return activation(s.activation)


def _check_act(s: Spec) -> None:
    if not s.act:
        raise ValueError("an act op needs its activation (field act)")


def _check_concat(s: Spec) -> None:
    if s.cout <= s.cin:
        raise ValueError(f"a concat's output channels ({s.cout}) must exceed its first input's ({s.cin})")


def _always(s: Spec) -> bool:
    return True


def _label_ew(s: Spec) -> str:
    return s.kind if s.activation == "linear" else f"{s.kind} {s.activation}"


ADD = register(Kind(
    "add", (), _build_add,
    doc="add-in{H}x{W}x{C}[-{act}]: elementwise add of two tensors (residual), + act.",
    default_act="linear", acts=ACTS, label=_label_ew, fusible=_always,
))

BN = register(Kind(
    "bn", (), _build_bn,
    doc="bn-in{H}x{W}x{C}[-{act}]: batch norm not preceded by a conv (+ act).",
    default_act="linear", acts=ACTS, label=_label_ew, fusible=_always, params=lambda s: 2 * s.cin,
))

ACT = register(Kind(
    "act", (), _build_act,
    doc="act-in{H}x{W}x{C}-{act}: a stand-alone activation.",
    acts=ACTS, check=_check_act, label=lambda s: f"act {s.activation}", fusible=_always,
))

CONCAT = register(Kind(
    "concat", (OUT,), _build_concat,
    doc="concat-in{H}x{W}x{C}-out{C'}: channel concat of the input (C) and a second tensor (C'-C).",
    check=_check_concat, fusible=_always,
))


def _build_slice(s: Spec):  # -> nn.Module
    from latency_lut.blocks.layers import Slice

    return Slice(s.cout)


def _check_slice(s: Spec) -> None:
    if s.cout > s.cin:
        raise ValueError(f"a slice takes at most its input's {s.cin} channels, not {s.cout}")


SLICE = register(Kind(
    "slice", (OUT,), _build_slice,
    doc="slice-in{H}x{W}x{C}-out{C'}: C' contiguous channels taken from C (a chunk/split part).",
    check=_check_slice, fusible=_always,
))
