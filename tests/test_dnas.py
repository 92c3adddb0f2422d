"""The DNAS side of a LUT: latency tensor, expected latency and its gradient, losses, Gumbel-softmax schedule."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from latency_lut.dnas import (
    GumbelSchedule,
    LatencyLossError,
    LatencyTable,
    fbnet_loss,
    gumbel_softmax,
    proxyless_additive_loss,
    proxyless_loss,
    temperature,
)
from latency_lut.errors import ArchitectureError, LatencyLutError, LUTFormatError, UnknownOpError
from latency_lut.measure import Stats
from latency_lut.predict import predict
from latency_lut.spaces import get_space
from latency_lut.synthetic import synthetic_lut

SPACE = get_space("fbnet", 32, 0.25)


@pytest.fixture(scope="module")
def lut():
    return synthetic_lut(SPACE, seed=1)


@pytest.fixture(scope="module")
def table(lut):
    return LatencyTable.from_lut(lut)


def test_table_shape_identity_and_fixed_cost(lut, table):
    assert table.shape == (22, 9)
    layers = SPACE.layers()
    for l, layer in enumerate(layers):
        for c in range(9):
            spec = SPACE.candidate_spec(layer, c)
            if spec.is_identity:
                assert table.identity[l, c] and table.table[l, c] == 0.0
            else:
                assert not table.identity[l, c] and table.table[l, c] == lut[spec.key].median
    # At width 0.25 several stride-1 layers keep their channels, so their skip is a structural zero.
    assert int(table.identity.sum()) == sum(l.stride == 1 and l.cin == l.cout for l in layers)
    fixed = [SPACE.stem_spec(), *SPACE.tail_specs()]
    assert table.fixed == pytest.approx(sum(lut[s.key].median for s in fixed), abs=1e-12)


def test_one_hot_weights_give_the_predicted_latency(lut, table):
    for name in ("fbnet_b", "fbnet_c"):  # fbnet_a has its own 1504 head, which a searched arch does not
        choices = SPACE.parse_arch(name).choices
        w = torch.nn.functional.one_hot(torch.tensor(choices), 9).double()
        assert float(table.expected(w)) == pytest.approx(predict(lut, name).total_ms, rel=1e-12)
        assert float(table.latency_of(torch.tensor(choices))) == pytest.approx(predict(lut, name).total_ms, rel=1e-12)


def test_expected_latency_closed_form_and_gradient(table):
    torch.manual_seed(0)
    theta = torch.randn(22, 9, dtype=torch.float64, requires_grad=True)
    m = torch.softmax(theta, -1)
    lat = table.expected(m)
    t = table.table
    want = float((torch.softmax(theta.detach(), -1) * t).sum() + table.fixed)
    assert float(lat.detach()) == pytest.approx(want, rel=1e-12)
    lat.backward()
    # d/dtheta of sum_i softmax_i * t_i = m * (t - sum_i m_i t_i), per layer
    md = m.detach()
    closed = md * (t - (md * t).sum(-1, keepdim=True))
    torch.testing.assert_close(theta.grad, closed, rtol=1e-10, atol=1e-12)
    # and against central finite differences on a few coordinates
    for l, c in [(0, 0), (5, 3), (21, 8)]:
        eps = 1e-6
        tp, tm = theta.detach().clone(), theta.detach().clone()
        tp[l, c] += eps
        tm[l, c] -= eps
        fd = (table.expected(torch.softmax(tp, -1)) - table.expected(torch.softmax(tm, -1))) / (2 * eps)
        assert float(theta.grad[l, c]) == pytest.approx(float(fd), rel=1e-5, abs=1e-9)


def test_gradient_wrt_weights_is_the_table(table):
    w = torch.full((22, 9), 1 / 9, requires_grad=True)
    table.expected(w).backward()
    torch.testing.assert_close(w.grad, table.table.float())


def test_dtype_and_device_follow_the_input(table):
    for dtype in (torch.float32, torch.float64):
        w = torch.softmax(torch.zeros(4, 22, 9, dtype=dtype), -1)
        out = table.expected(w)
        assert out.dtype == dtype and out.shape == (4,)
        assert torch.allclose(out.double(), out[0].double().expand(4))
    # The meta device stands in for CUDA: the table moves to whatever device the weights live on.
    out = table.expected(torch.empty(22, 9, device="meta"))
    assert out.device.type == "meta"
    assert table.per_layer(torch.softmax(torch.zeros(22, 9), -1)).shape == (22,)


@pytest.mark.parametrize("shape", [(21, 9), (22, 8), (9, 22), (22,)])
def test_wrong_shape_is_an_architecture_error(table, shape):
    with pytest.raises(ArchitectureError, match=r"22, 9"):
        table.expected(torch.zeros(shape))


def test_integer_weights_and_bad_indices_are_errors(table):
    with pytest.raises(ArchitectureError, match="floating point"):
        table.expected(torch.zeros(22, 9, dtype=torch.long))
    with pytest.raises(ArchitectureError, match="outside 0-8"):
        table.latency_of(torch.full((22,), 9))
    with pytest.raises(ArchitectureError, match="integer"):
        table.latency_of(torch.zeros(22))


def test_derive_takes_the_argmax(table):
    theta = torch.zeros(22, 9)
    theta[:, 8] = 1.0
    theta[3, 2] = 5.0
    assert table.derive(theta) == [8, 8, 8, 2] + [8] * 18


def _with_median(lut, key, value):
    bad = dataclasses.replace(lut)
    bad.entries = dict(lut.entries)
    e = bad.entries[key]
    s = dataclasses.asdict(e.stats)
    s["median"] = value
    bad.entries[key] = dataclasses.replace(e, stats=Stats(**s))
    return bad


@pytest.mark.parametrize("value", [float("nan"), -0.5, float("inf")])
def test_nan_or_negative_latency_is_rejected(lut, value):
    key = SPACE.candidate_spec(SPACE.layers()[4], 3).key
    with pytest.raises(LUTFormatError, match=key):
        LatencyTable.from_lut(_with_median(lut, key, value))


def test_missing_op_lists_keys(lut):
    key = SPACE.candidate_spec(SPACE.layers()[6], 7).key
    partial = dataclasses.replace(lut)
    partial.entries = {k: v for k, v in lut.entries.items() if k != key}
    with pytest.raises(UnknownOpError, match=key) as ei:
        LatencyTable.from_lut(partial)
    assert ei.value.missing == [key]


def test_lut_of_another_space_or_resolution(lut):
    with pytest.raises(LUTFormatError, match="fbnet-32-w0.25.*fbnet-64-w0.25"):
        LatencyTable.from_lut(lut, get_space("fbnet", 64, 0.25))


def test_fbnet_loss_value_and_gradient():
    ce = torch.tensor(2.0, dtype=torch.float64)
    lat = torch.tensor(20.0, dtype=torch.float64, requires_grad=True)
    loss = fbnet_loss(ce, lat)
    assert float(loss.detach()) == pytest.approx(2.0 * 0.2 * math.log(20.0) ** 0.6, rel=1e-12)
    loss.backward()
    assert float(lat.grad) == pytest.approx(2.0 * 0.2 * 0.6 * math.log(20.0) ** -0.4 / 20.0, rel=1e-10)
    assert float(fbnet_loss(ce, lat.detach(), alpha=1.0, beta=0.0)) == pytest.approx(2.0)


def test_fbnet_loss_sub_millisecond_needs_a_unit():
    with pytest.raises(LatencyLossError, match="unit=0.001"):
        fbnet_loss(torch.tensor(1.0), torch.tensor(0.4))
    assert float(fbnet_loss(torch.tensor(1.0), torch.tensor(0.4), unit=0.001)) == pytest.approx(
        0.2 * math.log(400.0) ** 0.6, rel=1e-6)
    assert issubclass(LatencyLossError, LatencyLutError)


def test_proxyless_variants():
    ce, lat = torch.tensor(1.5), torch.tensor(30.0)
    assert float(proxyless_loss(ce, lat, ref=20.0)) == pytest.approx(
        0.2 * 1.5 * (math.log(30.0) / math.log(20.0)) ** 0.6, rel=1e-6)
    assert float(proxyless_additive_loss(ce, lat, ref=20.0, lam=0.5)) == pytest.approx(1.5 + 0.5 * 10 / 20)
    with pytest.raises(LatencyLossError):
        proxyless_additive_loss(ce, lat, ref=0.0)
    with pytest.raises(LatencyLossError):
        proxyless_loss(ce, lat, ref=1.0)


def test_gumbel_schedule():
    s = GumbelSchedule()
    assert s.tau(0) == 5.0
    assert s.tau(1) == pytest.approx(5.0 * math.exp(-0.045))
    assert s.tau(90) == pytest.approx(5.0 * math.exp(-0.045 * 90))
    assert temperature(10) == pytest.approx(s.tau(1) ** 10 / 5.0**9)
    with pytest.raises(ValueError):
        s.tau(-1)


def test_gumbel_softmax_samples():
    theta = torch.tensor([[2.0, 0.0, -1.0]], dtype=torch.float64).repeat(20000, 1)
    g = torch.Generator().manual_seed(0)
    m = gumbel_softmax(theta, 1.0, generator=g)
    torch.testing.assert_close(m.sum(-1), torch.ones(20000, dtype=torch.float64))
    # Gumbel-max: the argmax of theta + g is distributed as softmax(theta)
    freq = torch.bincount(m.argmax(-1), minlength=3).double() / 20000
    torch.testing.assert_close(freq, torch.softmax(theta[0], -1), atol=0.015, rtol=0)
    again = gumbel_softmax(theta, 1.0, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(m, again)
    # a low temperature gives near one-hot samples, a high one near-uniform ones
    assert float(gumbel_softmax(theta[:100], 0.01).max(-1).values.mean()) > 0.99
    assert float(gumbel_softmax(theta[:100], 1e4).max(-1).values.max()) < 0.34


def test_hard_gumbel_is_one_hot_with_soft_gradient(table):
    theta = torch.zeros(22, 9, requires_grad=True)
    m = gumbel_softmax(theta, 5.0, hard=True, generator=torch.Generator().manual_seed(3))
    assert set(m.detach().unique().tolist()) == {0.0, 1.0} and torch.all(m.detach().sum(-1) == 1)
    table.expected(m).backward()
    assert theta.grad is not None and float(theta.grad.abs().sum()) > 0
    with pytest.raises(ValueError):
        gumbel_softmax(theta, 0.0)
