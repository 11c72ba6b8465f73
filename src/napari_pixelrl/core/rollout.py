"""One PixelRL episode: T steps of state -> policy -> per-pixel actions -> next state.

As in the paper, the state is not clipped during the episode; only the final image is clipped to [0, 1].
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from typing import NamedTuple

import torch

from .actions import ActionSet, apply_actions
from .model import PixelRLNet

__all__ = ["ACTION_BLOCK", "Episode", "Step", "choose_actions", "collect_episode", "episode_steps", "network_autocast"]


class Step(NamedTuple):
    """One step ``t`` of an episode, for a batch of images."""

    t: int
    """Step index, 0-based."""
    state: torch.Tensor
    """State after the step, ``s_{t+1}``, ``(B, C, H, W)``, not clipped."""
    actions: torch.Tensor
    """Action chosen per pixel in ``s_t``, ``(B, H, W)`` int64."""
    value: torch.Tensor | None
    """Value ``V(s_t)`` per pixel, ``(B, H, W)``, or ``None`` when not requested."""


class Episode(NamedTuple):
    """A whole episode of ``T`` steps for a batch of ``B`` images."""

    image: torch.Tensor
    """Final state clipped to [0, 1], ``(B, C, H, W)``."""
    actions: torch.Tensor
    """Action maps, ``(T, B, H, W)`` int64."""
    values: torch.Tensor | None
    """Value maps ``V(s_t)``, ``(T, B, H, W)``, or ``None``."""


def network_autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager:
    """Autocast of the network's arithmetic to ``dtype`` on ``device``; a no-op for ``None`` (plain float32)."""
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def choose_actions(
    logits: torch.Tensor,
    greedy: bool,
    generator: torch.Generator | None = None,
    rows: tuple[slice, int] | None = None,
) -> torch.Tensor:
    """Per-pixel action from policy logits ``(B, A, H, W)``: argmax, or a sample from softmax(logits).

    Sampling uses the Gumbel-max trick, ``argmax(logits + Gumbel noise)``, which draws exactly from the softmax
    distribution and stays on the logits' device. ``rows = (part, global_batch)`` says that these logits are
    rows ``part`` of a batch of ``global_batch`` (data-parallel training): the noise is drawn for the whole batch
    and sliced, so each row gets the sample that one process training the whole batch would give it.
    """
    if greedy:
        return logits.argmax(dim=1)
    part, shape = slice(None), logits.shape
    if rows is not None:
        part, shape = rows[0], (rows[1], *logits.shape[1:])
    uniform = torch.rand(shape, generator=generator, device=logits.device, dtype=logits.dtype)[part]
    gumbel = -torch.log(-torch.log(uniform.clamp_min(torch.finfo(logits.dtype).tiny)))
    return (logits + gumbel).argmax(dim=1)


ACTION_BLOCK = 16
"""Cell size (pixels) in which :func:`episode_steps` computes an action that few pixels chose
(:func:`~.actions.apply_actions`): after the first step a CNN-estimate policy sends a few hundred clustered pixels to
its estimate, which then runs on a fraction of the image."""


def episode_steps(
    model: PixelRLNet,
    image: torch.Tensor,
    action_set: ActionSet,
    steps: int,
    *,
    greedy: bool = True,
    with_value: bool = False,
    generator: torch.Generator | None = None,
    network_dtype: torch.dtype | None = None,
) -> Iterator[Step]:
    """Run an episode one step at a time, yielding after each step (so callers can report progress or stop).

    Parameters
    ----------
    model : PixelRLNet
        Network on the same device as ``image``.
    image : torch.Tensor
        Initial state ``s_0`` (e.g. the noisy image in [0, 1]), ``(B, C, H, W)`` float, ``C = action_set.channels``;
        the network sees ``action_set.network_input(state)``.
    action_set : ActionSet
        Actions that the policy's output channels stand for.
    steps : int
        Episode length T.
    greedy : bool
        Argmax of the policy (inference) or sampling from it (training).
    with_value : bool
        Also compute the value branch and report ``V(s_t)``.
    generator : torch.Generator, optional
        Random source for sampling.
    network_dtype : torch.dtype, optional
        Run the network's convolutions under autocast to this dtype (e.g. ``torch.bfloat16``): faster on CPUs
        and GPUs with native support, not bit-exact. The image state and the actions stay in the image's dtype.
    """
    if len(action_set) != model.config.n_actions:
        raise ValueError(f"model has {model.config.n_actions} action channels, action set has {len(action_set)}")
    state, hidden = image, None
    for t in range(steps):
        with network_autocast(state.device, network_dtype):
            out = model(action_set.network_input(state), hidden, with_value=with_value)
        actions = choose_actions(out.logits.float(), greedy, generator)
        value = out.value[:, 0].float() if out.value is not None else None
        state, hidden = apply_actions(state, actions, action_set, block=ACTION_BLOCK), out.hidden
        yield Step(t, state, actions, value)


def collect_episode(steps: Iterable[Step]) -> Episode:
    """Run the steps of :func:`episode_steps` to the end; return the clipped final image and all maps.

    Example: ``collect_episode(episode_steps(model, noisy, DENOISE, 5))``.
    """
    final, actions, values = None, [], []
    for step in steps:
        final = step.state
        actions.append(step.actions)
        values.append(step.value)
    if final is None:
        raise ValueError("an episode needs at least one step")
    return Episode(
        image=final.clamp(0.0, 1.0),
        actions=torch.stack(actions),
        values=None if values[0] is None else torch.stack(values),
    )
