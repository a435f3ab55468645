"""Tests of comir.training.loss against naive loop implementations of docs/method.md, section 3."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from comir.training.loss import activation_decay, equivariant_forward, info_nce, rot90_batch, similarity_matrix

CRITICS = ("mse", "cosine", "cosine_columns")


def naive_sim(a: torch.Tensor, b: torch.Tensor, critic: str) -> float:
    """Similarity of two single (C, H, W) points, written as plainly as possible."""
    if critic == "mse":
        return -((a - b) ** 2).mean().item()
    if critic == "cosine":
        return F.cosine_similarity(a.flatten(), b.flatten(), dim=0).item()
    # The authors' public code: similarity_fn(points[i], points[j]) with
    # F.cosine_similarity(x, y, dim=1).mean() on (C, H, W) points.
    return F.cosine_similarity(a, b, dim=1).mean().item()


def naive_info_nce(outputs: list[torch.Tensor], critic: str, tau: float) -> float:
    """Algorithm 1 with explicit loops over anchors, positives and negatives."""
    m_count, n = len(outputs), outputs[0].shape[0]
    points = [(m, s, outputs[m][s]) for m in range(m_count) for s in range(n)]
    terms = []
    for m_a, s_a, z_a in points:
        for m_p in range(m_count):
            if m_p == m_a:
                continue
            pos = naive_sim(z_a, outputs[m_p][s_a], critic) / tau
            denominator = math.exp(pos)
            for _, s_j, z_j in points:
                if s_j != s_a:
                    denominator += math.exp(naive_sim(z_a, z_j, critic) / tau)
            terms.append(-pos + math.log(denominator))
    return sum(terms) / len(terms)


def paper_formula_m2(za: torch.Tensor, zb: torch.Tensor, critic: str, tau: float) -> float:
    """Paper eq. for M = 2: rows of the 2N points, positive (i + N) mod 2N, all j != i below."""
    z = torch.cat([za, zb])
    two_n = z.shape[0]
    n = two_n // 2
    total = 0.0
    for i in range(two_n):
        pos = naive_sim(z[i], z[(i + n) % two_n], critic) / tau
        others = [naive_sim(z[i], z[j], critic) / tau for j in range(two_n) if j != i]
        assert len(others) == 2 * n - 1  # the positive plus 2N - 2 negatives
        total += -pos + math.log(sum(math.exp(s) for s in others))
    return total / two_n


def random_outputs(m: int, seed: int, shape=(3, 2, 4, 4)) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g, dtype=torch.float64) for _ in range(m)]


@pytest.mark.parametrize("critic", CRITICS)
def test_similarity_matrix_matches_pairwise_loop(critic):
    z = random_outputs(1, 0, shape=(5, 2, 4, 3))[0]
    tau = 0.3
    got = similarity_matrix(z, critic, tau)
    assert got.shape == (5, 5)
    expected = torch.tensor(
        [[naive_sim(z[i], z[j], critic) / tau for j in range(5)] for i in range(5)], dtype=z.dtype
    )
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


def test_cosine_columns_differs_from_cosine():
    z = random_outputs(1, 1)[0]
    cosine = similarity_matrix(z, "cosine", 1.0)
    assert not torch.allclose(cosine, similarity_matrix(z, "cosine_columns", 1.0))


@pytest.mark.parametrize("critic", CRITICS)
@pytest.mark.parametrize("m", [2, 3])
@pytest.mark.parametrize("tau", [0.1, 0.5])
def test_info_nce_matches_naive_reference(critic, m, tau):
    outputs = random_outputs(m, seed=10 * m + int(tau * 10))
    got = info_nce(outputs, critic=critic, tau=tau)
    assert got.dim() == 0
    assert got.item() == pytest.approx(naive_info_nce(outputs, critic, tau), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("critic", CRITICS)
@pytest.mark.parametrize("tau", [0.1, 0.5])
def test_info_nce_m2_is_paper_formula(critic, tau):
    za, zb = random_outputs(2, seed=3)
    expected = paper_formula_m2(za, zb, critic, tau)
    assert info_nce([za, zb], critic=critic, tau=tau).item() == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_info_nce_m3_leaves_other_positives_out_of_denominator():
    outputs = random_outputs(3, seed=4)
    # Counting the other positive as a negative (a plain "all j != i"
    # denominator) must give a different, larger value.
    z = torch.cat(outputs)
    n = outputs[0].shape[0]
    sim = similarity_matrix(z, "mse", 0.5)
    wrong = []
    for a in range(z.shape[0]):
        row = torch.cat([sim[a, :a], sim[a, a + 1 :]])
        for shift in (1, 2):
            wrong.append(-sim[a, (a + shift * n) % z.shape[0]] + torch.logsumexp(row, 0))
    assert info_nce(outputs, "mse", 0.5).item() < torch.stack(wrong).mean().item() - 1e-6


@pytest.mark.parametrize("critic", CRITICS)
def test_loss_lower_for_aligned_outputs_and_gradients_flow(critic):
    g = torch.Generator().manual_seed(5)
    a = torch.randn(6, 3, 8, 8, generator=g, requires_grad=True)
    b_aligned = (a.detach() + 0.01 * torch.randn(a.shape, generator=g)).requires_grad_()
    b_random = torch.randn(a.shape, generator=g)
    aligned = info_nce([a, b_aligned], critic=critic, tau=0.5)
    random = info_nce([a.detach(), b_random], critic=critic, tau=0.5)
    assert aligned.item() < random.item()
    aligned.backward()
    for t in (a, b_aligned):
        assert t.grad is not None
        assert torch.isfinite(t.grad).all()
        assert t.grad.abs().sum() > 0


@pytest.mark.parametrize("critic", CRITICS)
def test_loss_invariant_to_negating_all_outputs(critic):
    za, zb = random_outputs(2, seed=6)
    torch.testing.assert_close(info_nce([za, zb], critic, 0.5), info_nce([-za, -zb], critic, 0.5))


@pytest.mark.parametrize("critic", CRITICS)
def test_no_overflow_small_tau_large_activations(critic):
    g = torch.Generator().manual_seed(7)
    a = (1000.0 * torch.randn(4, 3, 8, 8, generator=g)).requires_grad_()
    b = (1000.0 * torch.randn(4, 3, 8, 8, generator=g)).requires_grad_()
    loss = info_nce([a, b], critic=critic, tau=1e-3)
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()
    # identical outputs: every row is dominated by its positive, loss ~ 0
    same = info_nce([a.detach(), a.detach()], critic=critic, tau=1e-3)
    assert torch.isfinite(same) and same.item() < 1e-3


def test_half_precision_outputs_are_cast_up():
    za, zb = (z.float() for z in random_outputs(2, seed=8))
    loss_half = info_nce([za.half(), zb.half()], "mse", 0.1)
    assert loss_half.dtype == torch.float32
    expected = info_nce([za.half().float(), zb.half().float()], "mse", 0.1)
    torch.testing.assert_close(loss_half, expected)


def test_float64_stays_float64():
    za, zb = random_outputs(2, seed=9)
    assert info_nce([za, zb]).dtype == torch.float64


def test_info_nce_rejects_bad_input():
    za, zb = random_outputs(2, seed=11)
    with pytest.raises(ValueError):
        info_nce([za])
    with pytest.raises(ValueError):
        info_nce([za, zb[:, :1]])
    with pytest.raises(ValueError):
        info_nce([za[:1], zb[:1]])  # no negatives with a single sample
    with pytest.raises(ValueError):
        info_nce([za, zb], critic="bilinear")
    with pytest.raises(ValueError):
        info_nce([za, zb], tau=0.0)


def test_activation_decay_is_one_mean_over_all_outputs():
    ya = torch.tensor([[[[1.0, -2.0], [3.0, 0.0]]]])
    yb = torch.tensor([[[[-1.0, 1.0], [1.0, -1.0]]]])
    # All 8 elements together: mean|y| = (6 + 4) / 8, mean y^2 = (14 + 4) / 8 (the authors' code),
    # not the sum of the two per-network means (which doubles the weight for two networks).
    got = activation_decay([ya, yb], l1=0.1, l2=0.01)
    assert got.item() == pytest.approx(0.1 * 10 / 8 + 0.01 * 18 / 8, rel=1e-6)
    # Outputs of different shapes: every element counts once.
    yc = torch.tensor([[[[2.0, -4.0, 0.5]]]])
    direct = torch.cat([ya.flatten(), yc.flatten()])
    expected = 0.3 * direct.abs().mean() + 0.7 * direct.square().mean()
    torch.testing.assert_close(activation_decay([ya, yc], 0.3, 0.7), expected)
    assert activation_decay([ya.half()], 1.0, 1.0).dtype == torch.float32
    assert activation_decay([ya.double(), yb], 1.0, 1.0).dtype == torch.float64
    with pytest.raises(ValueError):
        activation_decay([], 1.0, 1.0)


def _close_pairs(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 outputs whose positives differ by 1e-3 noise.

    Negatives are 0.3 * sqrt(2) apart per element, so that with tau 0.05 they still weigh in the
    denominator next to the positive.
    """
    g = torch.Generator().manual_seed(seed)
    za = 0.3 * torch.randn(6, 2, 8, 8, generator=g)
    zb = za + 1e-3 * torch.randn(za.shape, generator=g)
    return za, zb


def _loss_and_grads(za: torch.Tensor, zb: torch.Tensor, critic: str, tau: float, autocast: bool):
    a, b = za.clone().requires_grad_(), zb.clone().requires_grad_()
    # Forward under the caller's autocast, backward outside it (as train() and PyTorch's AMP recipe do).
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss = info_nce([a, b], critic=critic, tau=tau) + activation_decay([a, b], 1e-4, 1e-4)
    loss.backward()
    return loss.detach(), a.grad, b.grad


@pytest.mark.parametrize("tau", [0.5, 0.05])
@pytest.mark.parametrize("critic", CRITICS)
def test_loss_under_autocast_is_the_float32_loss(critic, tau):
    """The loss disables autocast, so the result is float32's.

    Autocast would run the similarity matmuls in bf16 (8 significant bits): the 1e-3 distance of the
    positives would drown in rounding.
    """
    za, zb = _close_pairs(13)
    expected = _loss_and_grads(za, zb, critic, tau, autocast=False)
    got = _loss_and_grads(za, zb, critic, tau, autocast=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        sim = similarity_matrix(torch.cat([za, zb]), critic, tau)
    assert got[0].dtype == torch.float32 and sim.dtype == torch.float32
    torch.testing.assert_close(sim, similarity_matrix(torch.cat([za, zb]), critic, tau), rtol=1e-5, atol=0.0)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5 * e.abs().max().item())


def test_rot90_batch_matches_per_sample_rot90():
    g = torch.Generator().manual_seed(12)
    x = torch.randn(9, 2, 5, 5, generator=g)
    k = torch.tensor([0, 1, 2, 3, -1, -2, 5, 4, 3])
    got = rot90_batch(x, k)
    expected = torch.stack([torch.rot90(x[i], int(k[i]), dims=(1, 2)) for i in range(9)])
    assert torch.equal(got, expected)
    assert torch.equal(rot90_batch(got, -k), x)


def test_rot90_batch_gradient_and_errors():
    x = torch.randn(4, 1, 3, 3, requires_grad=True)
    k = torch.tensor([0, 1, 2, 3])
    weights = torch.randn(4, 1, 3, 3)
    (rot90_batch(x, k) * weights).sum().backward()
    expected = torch.stack([torch.rot90(weights[i], -int(k[i]), dims=(1, 2)) for i in range(4)])
    assert torch.equal(x.grad, expected)
    with pytest.raises(ValueError):
        rot90_batch(torch.zeros(2, 1, 3, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError):
        rot90_batch(torch.zeros(2, 1, 3, 3), torch.tensor([0, 1, 2]))


class _Asymmetric(nn.Module):
    """Not rotation equivariant: adds a horizontal gradient ramp."""

    def forward(self, x):
        ramp = torch.arange(x.shape[-1], dtype=x.dtype)
        return x + ramp


def test_equivariant_forward_with_equivariant_model_is_identity():
    torch.manual_seed(13)
    pointwise = nn.Conv2d(3, 2, kernel_size=1)
    x = torch.randn(8, 3, 6, 6)
    got = equivariant_forward(pointwise, x, torch.Generator().manual_seed(0))
    assert torch.equal(got, pointwise(x))


def test_equivariant_forward_rotates_and_is_seeded():
    x = torch.randn(16, 1, 4, 4)
    model = _Asymmetric()
    out1 = equivariant_forward(model, x, torch.Generator().manual_seed(1))
    out2 = equivariant_forward(model, x, torch.Generator().manual_seed(1))
    assert torch.equal(out1, out2)
    # same draws, done by hand: one k per sample from the generator
    k = torch.randint(0, 4, (16,), generator=torch.Generator().manual_seed(1))
    assert len(set(k.tolist())) > 1
    expected = torch.cat(
        [
            torch.rot90(model(torch.rot90(x[i : i + 1], int(k[i]), dims=(2, 3))), -int(k[i]), dims=(2, 3))
            for i in range(16)
        ]
    )
    assert torch.equal(out1, expected)
    rotated = k != 0
    assert not torch.allclose(out1[rotated], model(x)[rotated])
    assert torch.equal(out1[~rotated], model(x)[~rotated])
