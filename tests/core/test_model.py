from __future__ import annotations

import torch

from napari_pixelrl.core.config import ModelConfig
from napari_pixelrl.core.model import PixelRLNet


def test_paper_network_has_the_release_parameter_count():
    assert sum(p.numel() for p in PixelRLNet().parameters()) == 487_179


def test_every_map_keeps_the_image_size():
    model = PixelRLNet(ModelConfig(width=8))
    out = model(torch.rand(2, 1, 13, 17))
    assert out.logits.shape == (2, 9, 13, 17)
    assert out.value.shape == (2, 1, 13, 17)
    assert out.hidden.shape == (2, 8, 13, 17)


def test_reward_filter_starts_as_identity():
    model = PixelRLNet(ModelConfig(width=4))
    returns = torch.rand(1, 1, 40, 40)
    torch.testing.assert_close(model.reward_conv(returns), returns)
    assert model.reward_conv.weight.shape == (1, 1, 33, 33)


def test_policy_only_path_skips_value_and_matches_full_forward():
    model = PixelRLNet(ModelConfig(width=8)).eval()
    calls = []
    model.value_branch.register_forward_hook(lambda *args: calls.append(1))
    image = torch.rand(1, 1, 10, 10)
    full = model(image)
    fast = model(image, with_value=False)
    assert fast.value is None and len(calls) == 1
    torch.testing.assert_close(fast.logits, full.logits)


def _gru_by_the_equations(gru, x, h):
    z = torch.sigmoid(gru.W_z(x) + gru.U_z(h))
    r = torch.sigmoid(gru.W_r(x) + gru.U_r(h))
    h_tilde = torch.tanh(gru.W(x) + gru.U(r * h))
    return (1 - z) * h + z * h_tilde


def test_gru_inference_path_equals_the_paper_equations():
    torch.manual_seed(0)
    model = PixelRLNet(ModelConfig(width=6))
    x, h = torch.randn(2, 6, 9, 9), torch.randn(2, 6, 9, 9)
    with torch.no_grad():
        expected = _gru_by_the_equations(model.gru, x, h)
        expected_first = _gru_by_the_equations(model.gru, x, torch.zeros_like(h))
        torch.testing.assert_close(model.gru(x, h), expected)
        torch.testing.assert_close(model.gru(x, None), expected_first)
    with torch.enable_grad():  # the autograd path gives the same numbers and gradients flow
        out = model.gru(x, h)
        torch.testing.assert_close(out, expected)
        out.sum().backward()
        assert model.gru.U.weight.grad is not None
