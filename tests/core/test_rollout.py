from __future__ import annotations

import numpy as np
import torch
from conftest import make_policy

from napari_pixelrl.core.actions import DENOISE, apply_actions
from napari_pixelrl.core.rollout import choose_actions, collect_episode, episode_steps


def run_episode(*args, **kwargs):
    return collect_episode(episode_steps(*args, **kwargs))


def test_episode_returns_maps_for_every_step():
    policy = make_policy()
    image = torch.rand(2, 1, 12, 10)
    episode = run_episode(policy.model, image, DENOISE, 4, with_value=True)
    assert episode.image.shape == image.shape
    assert episode.actions.shape == (4, 2, 12, 10) and episode.actions.dtype == torch.int64
    assert episode.values.shape == (4, 2, 12, 10)
    assert run_episode(policy.model, image, DENOISE, 2).values is None


def test_episode_replays_step_by_step():
    policy = make_policy(seed=3)
    image = torch.rand(1, 1, 9, 9)
    episode = run_episode(policy.model, image, DENOISE, 3)
    state = image
    for t in range(3):
        state = apply_actions(state, episode.actions[t], DENOISE)
    torch.testing.assert_close(episode.image, state.clamp(0, 1))


def test_state_is_not_clipped_inside_the_episode_only_at_the_end():
    policy = make_policy(fixed_action=2)  # always "pixel + 1"
    image = torch.full((1, 1, 5, 5), 1.0 - 1 / 255)
    states = [step.state for step in episode_steps(policy.model, image, DENOISE, 3)]
    np.testing.assert_allclose(states[-1].numpy(), 1.0 + 2 / 255, atol=1e-6)  # grew past 1 during the episode
    assert run_episode(policy.model, image, DENOISE, 3).image.max().item() == 1.0


def test_sampling_draws_from_the_softmax():
    logits = torch.log(torch.tensor([0.1, 0.2, 0.7])).view(1, 3, 1, 1).expand(1, 3, 200, 200)
    actions = choose_actions(logits, greedy=False, generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(actions.flatten(), minlength=3).double() / actions.numel()
    torch.testing.assert_close(freq, torch.tensor([0.1, 0.2, 0.7], dtype=torch.float64), atol=0.01, rtol=0)
    assert torch.equal(choose_actions(logits, greedy=True), torch.full((1, 200, 200), 2))


def test_sampling_is_reproducible_with_a_generator():
    policy = make_policy()
    image = torch.rand(1, 1, 8, 8)
    first = run_episode(policy.model, image, DENOISE, 2, greedy=False, generator=torch.Generator().manual_seed(7))
    again = run_episode(policy.model, image, DENOISE, 2, greedy=False, generator=torch.Generator().manual_seed(7))
    assert torch.equal(first.actions, again.actions)
