"""Op specs: canonical, hashable descriptions of one benchmarkable unit.

An :class:`OpSpec` is the unit a LUT is keyed by: a candidate block at one layer's input shape, or a fixed op of
the network (stem conv, head conv, global pool, classifier). The spec alone determines the torch module that is
exported and measured, its FLOPs and parameter count, and its key, so what is measured is what is predicted.

Key grammar (stable; documented in the README, parsed back by :meth:`OpSpec.from_key`)::

    conv-in{H}x{W}x{C}-out{C'}-k{K}-s{S}              # KxK conv + BN + ReLU (stem, head)
    ir-in{H}x{W}x{C}-out{C'}-k{K}-e{E}-g{G}-s{S}      # FBNet inverted-residual block
    skip-in{H}x{W}x{C}-out{C'}-s{S}                   # skip: identity, or 1x1 projection conv + BN + ReLU
    gap-in{H}x{W}x{C}                                 # global average pool (+ flatten)
    fc-in{C}-out{C'}                                  # linear classifier

A dtype other than fp32 is appended as ``-{dtype}`` (for example ``-int8``).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

KINDS = ("conv", "ir", "skip", "gap", "fc")
DTYPES = ("fp32", "fp16", "int8")

_KEY_RE = re.compile(
    r"^(?P<kind>conv|ir|skip|gap|fc)"
    r"-in(?:(?P<h>\d+)x(?P<w>\d+)x)?(?P<cin>\d+)"
    r"(?:-out(?P<cout>\d+))?"
    r"(?:-k(?P<k>\d+))?"
    r"(?:-e(?P<e>\d+(?:\.\d+)?))?"
    r"(?:-g(?P<g>\d+))?"
    r"(?:-s(?P<s>\d+))?"
    r"(?:-(?P<dtype>fp16|int8))?$"
)


def conv_out(size: int, kernel: int, stride: int) -> int:
    """Spatial output size of a conv with 'same'-style padding kernel // 2."""
    return (size + 2 * (kernel // 2) - kernel) // stride + 1


def _fmt_e(e: float) -> str:
    return str(int(e)) if float(e).is_integer() else f"{e:g}"


@dataclass(frozen=True, order=True)
class OpSpec:
    """One benchmarkable unit; see the module docstring for the key grammar."""

    kind: str
    cin: int
    h: int = 1
    w: int = 1
    cout: int = 0
    kernel: int = 1
    stride: int = 1
    expansion: float = 1
    groups: int = 1
    dtype: str = "fp32"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown op kind {self.kind!r}; expected one of {', '.join(KINDS)}")
        if self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}; expected one of {', '.join(DTYPES)}")
        if self.kind == "gap" and self.cout == 0:
            object.__setattr__(self, "cout", self.cin)
        for name in ("cin", "h", "w", "cout", "kernel", "stride", "groups"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"op field {name} must be >= 1, got {getattr(self, name)}")

    # ---- identity and shapes -------------------------------------------------------------------------------
    @property
    def key(self) -> str:
        k = self.kind
        if k == "fc":
            base = f"fc-in{self.cin}-out{self.cout}"
        elif k == "gap":
            base = f"gap-in{self.h}x{self.w}x{self.cin}"
        else:
            base = f"{k}-in{self.h}x{self.w}x{self.cin}-out{self.cout}"
            if k == "conv":
                base += f"-k{self.kernel}-s{self.stride}"
            elif k == "ir":
                base += f"-k{self.kernel}-e{_fmt_e(self.expansion)}-g{self.groups}-s{self.stride}"
            else:
                base += f"-s{self.stride}"
        return base if self.dtype == "fp32" else f"{base}-{self.dtype}"

    @classmethod
    def from_key(cls, key: str) -> OpSpec:
        """Parse a key back into its spec; raises ``ValueError`` for anything that is not a valid key."""
        m = _KEY_RE.match(key)
        if not m:
            raise ValueError(f"not an op key: {key!r}")
        g = m.groupdict()
        kind = g["kind"]
        fields: dict[str, Any] = {"kind": kind, "cin": int(g["cin"]), "dtype": g["dtype"] or "fp32"}
        if kind != "fc":
            if g["h"] is None:
                raise ValueError(f"op key {key!r} lacks its HxWxC input shape")
            fields.update(h=int(g["h"]), w=int(g["w"]))
        if g["cout"]:
            fields["cout"] = int(g["cout"])
        if g["k"]:
            fields["kernel"] = int(g["k"])
        if g["e"]:
            fields["expansion"] = float(g["e"]) if "." in g["e"] else int(g["e"])
        if g["g"]:
            fields["groups"] = int(g["g"])
        if g["s"]:
            fields["stride"] = int(g["s"])
        spec = cls(**fields)
        if spec.key != key:
            raise ValueError(f"op key {key!r} is not canonical (expected {spec.key!r})")
        return spec

    @property
    def is_identity(self) -> bool:
        """A skip that changes nothing costs nothing and is never measured."""
        return self.kind == "skip" and self.stride == 1 and self.cin == self.cout

    @property
    def has_residual(self) -> bool:
        return self.kind == "ir" and self.stride == 1 and self.cin == self.cout

    @property
    def mid(self) -> int:
        """Hidden channels of an inverted-residual block, rounded to a multiple of its groups."""
        m = int(round(self.cin * self.expansion))
        return max(self.groups, m - m % self.groups)

    @property
    def out_hw(self) -> tuple[int, int]:
        if self.kind in ("fc", "gap"):
            return (1, 1)
        k = self.kernel if self.kind in ("conv", "ir") else 1
        return (conv_out(self.h, k, self.stride), conv_out(self.w, k, self.stride))

    @property
    def input_shape(self) -> tuple[int, ...]:
        """NCHW input shape (batch 1); ``(1, C)`` for the classifier."""
        return (1, self.cin) if self.kind == "fc" else (1, self.cin, self.h, self.w)

    @property
    def output_shape(self) -> tuple[int, ...]:
        if self.kind in ("fc", "gap"):
            return (1, self.cout)
        return (1, self.cout, *self.out_hw)

    # ---- cost model ----------------------------------------------------------------------------------------
    @property
    def flops(self) -> int:
        """Multiply-adds of the convolutions and linear layers (BN, ReLU and adds are not counted)."""
        ho, wo = self.out_hw
        if self.kind == "conv":
            return ho * wo * self.cout * self.cin * self.kernel**2
        if self.kind == "ir":
            mid, g = self.mid, self.groups
            pw1 = self.h * self.w * self.cin * mid // g
            dw = ho * wo * mid * self.kernel**2
            pw2 = ho * wo * mid * self.cout // g
            return pw1 + dw + pw2
        if self.kind == "skip":
            return 0 if self.is_identity else ho * wo * self.cin * self.cout
        if self.kind == "gap":
            return self.h * self.w * self.cin
        return self.cin * self.cout

    @property
    def params(self) -> int:
        """Trainable parameters: conv/linear weights, BN affine pairs, the classifier bias."""
        if self.kind == "conv":
            return self.cin * self.cout * self.kernel**2 + 2 * self.cout
        if self.kind == "ir":
            mid, g = self.mid, self.groups
            pw1 = self.cin * mid // g + 2 * mid
            dw = mid * self.kernel**2 + 2 * mid
            return pw1 + dw + mid * self.cout // g + 2 * self.cout
        if self.kind == "skip":
            return 0 if self.is_identity else self.cin * self.cout + 2 * self.cout
        if self.kind == "gap":
            return 0
        return self.cin * self.cout + self.cout

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def build_module(self) -> Any:
        """The torch module of this op (torch is imported here, not at package import)."""
        from latency_lut.blocks import build_op

        return build_op(self)

    def __str__(self) -> str:
        return self.key
