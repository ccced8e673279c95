"""Torch's CPU Bernoulli draws through the int64 route: the same values, the same generator state."""

from __future__ import annotations

import pytest
import torch

from rankfusion import bernoulli


def test_the_check_says_whether_the_route_agrees_with_this_torch():
    # some torch builds draw through MKL on Intel CPUs, with other values; there the check says no
    # and torch's sampler is used (the fallback test below); so this compares the check with an
    # independent sample rather than asserting that the route applies
    ref, gen = torch.Generator().manual_seed(2024), torch.Generator().manual_seed(2024)
    want = torch.empty(10_000).bernoulli_(0.75, generator=ref)
    got = bernoulli._fast(torch.empty(10_000), 0.75, gen)
    agrees = torch.equal(want, got) and torch.equal(ref.get_state(), gen.get_state())
    assert bernoulli.fast_draws_agree() == agrees


@pytest.mark.parametrize("p", [0.9, 0.5, 1 - 0.1, 1 - 0.3, 0.123456789, 1e-9, 0.0, 1.0])
def test_same_values_and_state_as_bernoulli_(p):
    ref, gen = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    want = torch.empty(3, 50, 40).bernoulli_(p, generator=ref)
    got = bernoulli.bernoulli_into(torch.empty(3, 50, 40), p, gen)
    assert torch.equal(got, want)
    assert torch.equal(ref.get_state(), gen.get_state())
    # the generator goes on to the same next draws
    assert torch.equal(torch.rand(5, generator=ref), torch.rand(5, generator=gen))


def test_the_threshold_is_exact_where_p_is_not_a_multiple_of_2_to_the_minus_53():
    # u = x / 2**53 < p for integer x exactly when x < ceil(p * 2**53); checked at the boundary
    p = 0.123456789
    t = bernoulli._threshold(p)
    assert (t - 1) / 2.0 ** 53 < p <= t / 2.0 ** 53
    assert bernoulli._threshold(0.5) == 2 ** 52 and bernoulli._threshold(1.0) == 2 ** 53


def test_a_strided_view_is_filled_in_its_element_order():
    ref, gen = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a, b = torch.zeros(2, 9, 12), torch.zeros(2, 9, 12)
    a[1, :7, :5].bernoulli_(0.8, generator=ref)
    bernoulli.bernoulli_into(b[1, :7, :5], 0.8, gen)
    assert torch.equal(a, b)
    assert torch.equal(ref.get_state(), gen.get_state())


@pytest.mark.parametrize("view", [lambda t: t.t(), lambda t: t.reshape(2, 3, 4, 5).permute(0, 2, 1, 3),
                                  lambda t: t[:, ::2].t()])
def test_a_view_out_of_memory_order_gets_torchs_own_values(view):
    # torch fills in memory order: such a view goes to bernoulli_ itself (the int64 route fills in
    # logical order, and differs)
    ref, gen = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    a, b = torch.zeros(12, 10), torch.zeros(12, 10)
    view(a).bernoulli_(0.7, generator=ref)
    bernoulli.bernoulli_into(view(b), 0.7, gen)
    assert torch.equal(a, b)
    assert torch.equal(ref.get_state(), gen.get_state())


@pytest.mark.parametrize("p", [1.5, -0.1, torch.tensor(0.5)])
def test_what_torch_would_refuse_or_draw_otherwise_goes_to_torch(p):
    ref, gen = torch.Generator().manual_seed(2), torch.Generator().manual_seed(2)
    try:
        want = torch.empty(50).bernoulli_(p, generator=ref)
    except RuntimeError as exc:
        with pytest.raises(RuntimeError, match=str(exc)[:30]):
            bernoulli.bernoulli_into(torch.empty(50), p, gen)
        return
    assert torch.equal(bernoulli.bernoulli_into(torch.empty(50), p, gen), want)
    assert torch.equal(ref.get_state(), gen.get_state())


def test_falls_back_to_torchs_sampler_where_the_route_disagrees(monkeypatch):
    monkeypatch.setattr(bernoulli, "fast_draws_agree", lambda: False)
    monkeypatch.setattr(bernoulli, "_fast", lambda *a: pytest.fail("the int64 route was used"))
    ref, gen = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    got = bernoulli.bernoulli_into(torch.empty(100), 0.9, gen)
    assert torch.equal(got, torch.empty(100).bernoulli_(0.9, generator=ref))
