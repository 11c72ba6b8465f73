from __future__ import annotations

import pytest
import torch

from napari_pixelrl.core.config import ModelConfig
from napari_pixelrl.core.model import PixelRLNet, denoised


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


def _dihedral(x: torch.Tensor, turns: int, mirrored: bool) -> torch.Tensor:
    x = torch.rot90(x, turns, dims=(2, 3))
    return x.flip(3) if mirrored else x


def test_denoised_once_is_the_input_minus_the_predicted_noise():
    torch.manual_seed(0)
    model = PixelRLNet(ModelConfig(width=8)).eval()
    image = torch.rand(2, 1, 13, 17)
    with torch.no_grad():
        noise = model.value_head(model.value_branch(model.trunk(image)))
        torch.testing.assert_close(denoised(model, image), image - noise, rtol=0, atol=0)


@pytest.mark.parametrize(("orientations", "symmetries"), [(4, [(1, False), (2, False)]), (8, [(1, False), (0, True)])])
def test_the_self_ensemble_turns_with_the_image(orientations, symmetries):
    # Averaged over a group of orientations, the estimate of a turned (or mirrored) image is the turned estimate:
    # true only if every view is turned back exactly. One pass of the network is not (random weights).
    torch.manual_seed(1)
    model = PixelRLNet(ModelConfig(width=8)).eval()
    image = torch.rand(1, 1, 15, 22)
    with torch.no_grad():
        for turns, mirrored in symmetries:
            turned = _dihedral(image, turns, mirrored)
            ensemble = denoised(model, turned, orientations)
            torch.testing.assert_close(ensemble, _dihedral(denoised(model, image, orientations), turns, mirrored))
            once = _dihedral(denoised(model, image), turns, mirrored)
            assert (denoised(model, turned) - once).abs().max() > 1e-4


def test_the_self_ensemble_is_the_mean_of_its_views_and_rejects_other_counts():
    torch.manual_seed(2)
    model = PixelRLNet(ModelConfig(width=8)).eval()
    image = torch.rand(1, 1, 12, 12)
    with torch.no_grad():
        turned_back = [
            torch.rot90(denoised(model, torch.rot90(image, k, dims=(2, 3))), -k, dims=(2, 3)) for k in (0, 1)
        ]
        torch.testing.assert_close(denoised(model, image, 2), (turned_back[0] + turned_back[1]) / 2)
    with pytest.raises(ValueError, match="orientations must be one of"):
        denoised(model, image, 3)
