"""Training: the paper's multi-step per-pixel advantage actor-critic with reward map convolution (RMC).

Read top to bottom: the reward and the returns, the loss of one episode, then :class:`Trainer`, which draws crops
and noise, updates the network once per episode, validates, checkpoints atomically and resumes exactly.

One episode on a batch of clean crops ``x`` and their noisy versions ``s_0``, for ``t = 0 .. T-1``::

    π(·|s_t), V(s_t) = network(s_t)           a_t ~ π(·|s_t) per pixel        s_{t+1} = action a_t applied to s_t
    r_t = 255 · ((x - s_t)² - (x - s_{t+1})²)
    R_t = r_t + γ · (w ∗ R_{t+1}),  R_T = 0    (w: the learned 33x33 RMC filter; without RMC, w ∗ R = R)
    loss = Σ_t mean_pixels[ -log π(a_t|s_t) · sg(R_t - V(s_t)) - β H(π(·|s_t)) + value_weight · ½ (R_t - V(s_t))² ]

``sg`` stops the gradient, so the RMC filter ``w`` learns only through the value term. The convGRU state is
carried from step to step as data (no backpropagation through time). Cheaper policy terms replace the first one
when asked (``TrainConfig.objective``): the exact expected one-step reward (or its natural gradient), imitation
of the greedy oracle, and ``"pathwise"``: that expected reward plus the later steps' error, backpropagated
through the rollout's actions (:func:`straight_through_step`);
a ``"denoiser"`` stage trains the trunk as a residual denoiser to start from. ``crop_weights="psnr"``
weights each crop's policy term (a denoiser stage: its squared error) by one over its initial error
(:func:`crop_weights`).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from .actions import ActionSet, apply_actions, get_action_set
from .checkpoint import CheckpointError, Policy, read_header, save_checkpoint, write_atomically, write_safetensors
from .config import PRECISIONS, RESUMABLE_CHANGES, ModelConfig, TrainConfig
from .data import ImageSet
from .distributed import Replicas, average_gradients, mean_over_replicas
from .environment import describe_machine, resolve_device, source_commit, usable_precision
from .metrics import psnr
from .model import PixelRLNet, denoised
from .rollout import choose_actions, collect_episode, episode_steps, network_autocast
from .sources import SyntheticNoise, TrainingData

__all__ = [
    "EpisodeLoss",
    "TrainUpdate",
    "Trainer",
    "changed_fields",
    "crop_weights",
    "denoised",
    "discounted_returns",
    "episode_loss",
    "from_denoiser",
    "reachable_error",
    "read_log",
    "saved_config",
    "stage_finished",
    "step_reward",
    "straight_through_step",
]

POLICY_FILE = "policy.safetensors"
STATE_FILE = "trainer_state.safetensors"
LOG_FILE = "log.jsonl"


# --- reward and returns ---------------------------------------------------------------------------------------


def step_reward(
    clean: torch.Tensor, state: torch.Tensor, next_state: torch.Tensor, action_set: ActionSet | None = None
) -> torch.Tensor:
    """Per-pixel reward: the decrease of the action set's error, ``e(x, s_t) - e(x, s_{t+1})``, ``(B, 1, H, W)``.

    For grey levels (no ``action_set``, or one without its own error) ``255 · ((x - s_t)² - (x - s_{t+1})²)``;
    for colour the decrease of the CIELAB distance (:func:`~napari_pixelrl.core.color.lab_distance`).
    """
    if action_set is None or action_set.error is None:
        return 255.0 * ((clean - state) ** 2 - (clean - next_state) ** 2).sum(dim=1, keepdim=True)
    return action_set.pixel_error(clean, state) - action_set.pixel_error(clean, next_state)


def discounted_returns(rewards: torch.Tensor, gamma: float, reward_conv: nn.Module | None = None) -> torch.Tensor:
    """Returns ``R_t = r_t + γ · (w ∗ R_{t+1})`` with ``R_T = 0``, computed backwards.

    Parameters
    ----------
    rewards : torch.Tensor
        ``(T, B, 1, H, W)`` per-pixel rewards.
    gamma : float
        Discount.
    reward_conv : nn.Module, optional
        The RMC filter ``w`` (a 1→1 channel convolution keeping the map size); ``None`` means the identity.

    Returns
    -------
    torch.Tensor
        ``(T, B, 1, H, W)``; differentiable with respect to ``reward_conv``'s weight.
    """
    if rewards.ndim != 5 or rewards.shape[2] != 1:
        raise ValueError(f"rewards must be (T, B, 1, H, W), got {tuple(rewards.shape)}")
    returns = []
    future = torch.zeros_like(rewards[0])
    for t in reversed(range(rewards.shape[0])):
        spread = future if reward_conv is None else reward_conv(future)
        future = rewards[t] + gamma * spread
        returns.append(future)
    return torch.stack(returns[::-1])


# --- the loss of one episode ------------------------------------------------------------------------------------


class EpisodeLoss(NamedTuple):
    """Loss of one episode and the numbers reported about it."""

    loss: torch.Tensor
    """Scalar to minimise."""
    policy_loss: float
    value_loss: float
    entropy: float
    """Mean per-pixel policy entropy, nats."""
    reward: float
    """Mean per-pixel sum of rewards over the episode, ``255 · (initial - final squared error)``."""
    action_counts: torch.Tensor
    """How often each action was taken, ``(n_actions,)``."""


def episode_loss(
    model: PixelRLNet,
    clean: torch.Tensor,
    noisy: torch.Tensor,
    config: TrainConfig,
    action_set: ActionSet,
    generator: torch.Generator | None = None,
    network_dtype: torch.dtype | None = None,
    replicas: Replicas | None = None,
) -> EpisodeLoss:
    """Run one sampled episode from ``noisy`` and return the actor-critic loss (see the module docstring).

    With ``config.objective == "expected-reward"`` the policy term is ``-Σ_a π(a|s_t) r_t(a)``, the exact expected
    one-step reward, instead of the sampled ``-log π(a_t|s_t) · advantage``; with ``"natural-reward"`` it is
    ``-Σ_a z_a(s_t) · sg(r_t(a) - Σ_b π(b|s_t) r_t(b))`` (``z``: the logits), whose gradient moves each logit by its
    action's exact advantage (the natural gradient of the expected reward); with ``"imitation"`` it is the
    cross-entropy with the greedy oracle's action ``argmax_a r_t(a)``, weighted per pixel by the spread of the
    rewards there; with ``"lookahead"`` the oracle is every action after which the ±1 steps still to come can
    reach the clean value (:func:`reachable_error`). With ``"pathwise"`` step ``t``'s policy gets the gradient of
    the exact expected reward of its own step plus that of the error that the later steps leave,
    ``e(x, s_T) - e(x, s_{t+1})``, backpropagated through the actions taken (:func:`straight_through_step`); the
    network's input is not differentiated, so the value loss and the entropy cannot reach earlier steps' choices.
    Everything else (sampled rollout, value loss with RMC returns, entropy bonus) is the same.
    With ``replicas`` of a data-parallel run, ``clean`` and ``noisy`` are this replica's rows of a global batch of
    ``config.batch_size``: actions are sampled as one process would sample them for those rows, and batch-wide
    statistics (the imitation weights' mean) are taken over the whole batch.
    """
    if config.objective == "lookahead" and action_set.error is not None:
        raise ValueError(f"objective 'lookahead' counts grey levels; action set {action_set.name!r} has its own error")
    replicas = replicas or Replicas()
    rows = (replicas.rows(config.batch_size), config.batch_size) if replicas.world_size > 1 else None
    state, hidden = noisy, None
    policy_terms, entropies, values, rewards = [], [], [], []
    counts = torch.zeros(len(action_set), dtype=torch.long, device=clean.device)
    for t in range(config.steps):
        with network_autocast(clean.device, network_dtype):
            out = model(action_set.network_input(state.detach()), hidden)
        log_probs = out.logits.float().log_softmax(dim=1)
        probs = log_probs.exp()
        actions = choose_actions(log_probs.detach(), config.rollout == "greedy", generator, rows)
        if config.objective in ("expected-reward", "natural-reward", "imitation", "lookahead", "pathwise"):
            candidates = torch.stack([action.apply(state) for action in action_set.actions], dim=1)  # (B,A,C,H,W)
            fixed = candidates.detach()
            if config.objective == "lookahead":
                term = _imitation_term(log_probs, -reachable_error(clean, fixed, config.steps - 1 - t), replicas, True)
            else:
                rewards_now = [step_reward(clean, state.detach(), c, action_set) for c in fixed.unbind(1)]
                all_rewards = torch.cat(rewards_now, 1)
                if config.objective == "imitation":
                    term = _imitation_term(log_probs, all_rewards, replicas)
                elif config.objective == "natural-reward":
                    advantages = all_rewards - (probs * all_rewards).sum(dim=1, keepdim=True)
                    term = -(out.logits.float() * advantages.detach()).sum(dim=1, keepdim=True)
                else:
                    term = -(probs * all_rewards).sum(dim=1, keepdim=True)
            if config.objective == "pathwise":
                next_state = straight_through_step(candidates, actions, probs)
                # The final error's straight-through gradient w.r.t. π(s_t) holds a linearisation of this step's
                # own reward: take it out (a term of value 0), leaving the exact expected reward above.
                own = step_reward(clean, straight_through_step(fixed, actions, probs), clean, action_set)
                term = term - (own - own.detach())
            else:
                chosen = actions[:, None, None].expand(-1, 1, state.shape[1], -1, -1)  # (B, 1, C, H, W)
                next_state = candidates.gather(1, chosen).squeeze(1)
            policy_terms.append(term)
        else:
            policy_terms.append(log_probs.gather(1, actions.unsqueeze(1)))
            next_state = apply_actions(state, actions, action_set)
        entropies.append(-(probs * log_probs).sum(dim=1, keepdim=True))
        values.append(out.value.float())
        rewards.append(step_reward(clean, state.detach(), next_state.detach(), action_set))
        counts += torch.bincount(actions.flatten(), minlength=len(action_set))
        state, hidden = next_state, out.hidden.detach()

    rewards_t, values_t = torch.stack(rewards), torch.stack(values)
    returns = discounted_returns(rewards_t, config.gamma, model.reward_conv if config.reward_map_conv else None)
    weights = crop_weights(clean, noisy, action_set, replicas) if config.crop_weights == "psnr" else 1.0
    if config.objective == "pathwise":
        final_error = step_reward(clean, state, clean, action_set)  # e(x, s_T), differentiable through the steps
        policy_loss = ((torch.stack(policy_terms).sum(dim=0) + final_error) * weights).mean()
    elif config.objective in ("expected-reward", "natural-reward", "imitation", "lookahead"):
        policy_loss = (torch.stack(policy_terms) * weights).sum(dim=0).mean()
    else:
        advantage = (returns - values_t).detach()
        policy_loss = -(torch.stack(policy_terms) * advantage * weights).sum(dim=0).mean()
    value_loss = (0.5 * (returns - values_t) ** 2).sum(dim=0).mean()
    entropy = torch.stack(entropies).sum(dim=0).mean()
    loss = policy_loss + config.value_weight * value_loss - config.entropy_beta * entropy
    return EpisodeLoss(
        loss=loss,
        policy_loss=float(policy_loss.detach()),
        value_loss=float(value_loss.detach()),
        entropy=float(entropy.detach()) / config.steps,
        reward=float(rewards_t.sum(dim=0).mean()),
        action_counts=counts,
    )


def straight_through_step(candidates: torch.Tensor, actions: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """Next state of the ``"pathwise"`` objective: the chosen action's output, with π's gradient flowing back.

    The value is ``candidates[b, actions[b, y, x], :, y, x]``, exactly the state a rollout moves to. The gradient
    is that of ``Σ_a π_a · candidates_a`` (the straight-through estimator): with respect to ``π_a`` it is the
    upstream gradient times what action ``a`` would have produced there, and with respect to the candidates it
    flows only into the chosen action's output (and through it into the earlier state).

    Parameters
    ----------
    candidates : torch.Tensor
        Every action applied to the state, ``(B, A, C, H, W)``.
    actions : torch.Tensor
        Chosen action per pixel, ``(B, H, W)`` int64.
    probs : torch.Tensor
        Policy ``π(·|s_t)``, ``(B, A, H, W)``.

    Returns
    -------
    torch.Tensor
        ``(B, C, H, W)``.
    """
    if candidates.ndim != 5 or probs.shape != candidates.shape[:2] + candidates.shape[3:]:
        raise ValueError(
            f"need candidates (B, A, C, H, W) and probs (B, A, H, W), got "
            f"{tuple(candidates.shape)} and {tuple(probs.shape)}"
        )
    chosen = torch.nn.functional.one_hot(actions, candidates.shape[1]).movedim(-1, 1).to(probs.dtype)
    weights = chosen + probs - probs.detach()  # equal to the one-hot choice, differentiable like π
    return (weights.unsqueeze(2) * candidates).sum(dim=1)


def crop_weights(
    clean: torch.Tensor, noisy: torch.Tensor, action_set: ActionSet, replicas: Replicas | None = None
) -> torch.Tensor:
    """Per-crop weights ``1 / e_b`` of the ``"psnr"`` crop weighting, normalised to mean 1 over the (global) batch.

    ``e_b`` is crop ``b``'s mean initial error (the sum of its rewards if every pixel were restored exactly), kept
    above 1 % of the batch mean so that a crop with almost nothing to restore cannot take the whole batch's weight.
    Since ``d PSNR_b = -(10 / ln 10) · d e_b / e_b``, weighting each crop's error decrease by ``1 / e_b`` (the initial
    error standing in for the current one) follows the mean PSNR of the batch rather than its mean squared error.
    Shape ``(B, 1, 1, 1)``.
    """
    replicas = replicas or Replicas()
    error = step_reward(clean, noisy, clean, action_set).mean(dim=(1, 2, 3))
    error = error.clamp_min(0.01 * mean_over_replicas(error.mean(), replicas))
    inverse = 1.0 / error
    return (inverse / mean_over_replicas(inverse.mean(), replicas)).view(-1, 1, 1, 1)


def reachable_error(clean: torch.Tensor, candidates: torch.Tensor, steps_left: int) -> torch.Tensor:
    """The least error each action's result can still reach with ±1 grey-level steps alone, per pixel.

    After action ``a`` with ``k = steps_left`` steps to go, ``k`` steps of ±1 can still move a pixel ``k`` grey
    levels, so the final error ``255 · max(0, |x - a(s)| - k/255)²`` (summed over channels) is within reach.
    ``clean`` is ``(B, C, H, W)``, ``candidates`` every action applied to the state ``(B, A, C, H, W)``; returns
    ``(B, A, H, W)``. With ``k = 0`` it is the error after the action itself.
    """
    if candidates.ndim != 5 or candidates.shape[:1] + candidates.shape[2:] != clean.shape or steps_left < 0:
        raise ValueError(
            f"need candidates (B, A, C, H, W) of clean {tuple(clean.shape)} and steps_left >= 0, got "
            f"{tuple(candidates.shape)} and {steps_left}"
        )
    gap = ((clean.unsqueeze(1) - candidates).abs() - steps_left / 255.0).clamp_min(0.0)
    return 255.0 * (gap**2).sum(dim=2)


def _imitation_term(
    log_probs: torch.Tensor, all_rewards: torch.Tensor, replicas: Replicas, all_best: bool = False
) -> torch.Tensor:
    """Cross-entropy with the greedy oracle's action (the one whose reward is highest), per pixel, weighted by what
    is at stake there (best minus worst reward, normalised to mean 1 over the (global) batch). With ``all_best``
    the target is every action that ties for the best (``-log`` of their summed probability), as the look-ahead
    target has many ties (every action that leaves a pixel within reach of its clean value)."""
    if all_best:
        tied = all_rewards >= all_rewards.amax(dim=1, keepdim=True)
        chosen = log_probs.masked_fill(~tied, -math.inf).logsumexp(dim=1, keepdim=True)
    else:
        chosen = log_probs.gather(1, all_rewards.argmax(dim=1, keepdim=True))
    stakes = all_rewards.amax(dim=1, keepdim=True) - all_rewards.amin(dim=1, keepdim=True)
    mean = mean_over_replicas(stakes.mean(), replicas)
    return -chosen * (stakes / mean.clamp_min(1e-12))


def denoiser_loss(
    model: PixelRLNet, clean: torch.Tensor, noisy: torch.Tensor, weights: torch.Tensor | float = 1.0
) -> torch.Tensor:
    """Warm-start loss: trunk → value branch → value head predicts the noise; mean squared error of the result,
    each crop's squared error times its weight (``(B, 1, 1, 1)``, e.g. :func:`crop_weights`; 1: the plain mean)."""
    return (((denoised(model, noisy) - clean) ** 2) * weights).mean()


def from_denoiser(model: PixelRLNet, seed: int = 0) -> PixelRLNet:
    """Turn a warm-started residual denoiser into a policy's starting point, as the authors did with theirs.

    The trunk is kept, the value branch's convolutions are copied into the policy branch, and the value head
    (which predicted noise, not returns) is initialised afresh from ``seed``.
    """
    with torch.no_grad():
        model.policy_branch.load_state_dict(model.value_branch.state_dict())
        fresh = _seeded(model.config, seed)
        model.value_head.load_state_dict(fresh.value_head.state_dict())
    return model


def _seeded(config: ModelConfig, seed: int) -> PixelRLNet:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return PixelRLNet(config)


# --- the training loop --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainUpdate:
    """Progress after one episode (one update), as yielded by :meth:`Trainer.run` and logged to ``log.jsonl``."""

    episode: int
    """Episodes done, 1-based."""
    episodes: int
    """Episodes in the whole run."""
    objective: str
    loss: float
    policy_loss: float
    value_loss: float
    entropy: float
    """Mean per-pixel policy entropy, nats."""
    reward: float
    """Mean per-pixel sum of rewards over the episode."""
    lr: float
    """Learning rate used for this update."""
    action_shares: tuple[float, ...]
    """Fraction of pixel-steps that took each action (sampled)."""
    validation_psnr: float | None
    """Mean PSNR (dB) on the held-out validation crops, greedy policy; ``None`` when not validated this time."""
    seconds: float
    """Training wall time so far, including time before a resume."""
    checkpoint: str | None
    """Path of the policy written after this episode, if one was."""
    stage: int = 1
    """Stage of a multi-stage recipe, 1-based (set by :func:`napari_pixelrl.api.train`)."""
    stages: int = 1
    """Stages in the recipe."""


class Trainer:
    """Trains a policy for one :class:`~napari_pixelrl.core.config.TrainConfig` stage in ``run_dir``.

    ``run_dir`` receives ``policy.safetensors`` (the policy, with its training record), ``trainer_state.safetensors``
    (everything needed to resume: weights, Adam state, episode, random generators) and ``log.jsonl`` (one
    :class:`TrainUpdate` per line). Both files are replaced atomically. A run dir that already holds a state is
    resumed, and continues exactly as if never stopped.

    Parameters
    ----------
    config : TrainConfig
        The stage to run.
    run_dir : path-like
        Output folder.
    initial : Policy, optional
        Starting weights (``config.init`` resolved by the caller); a warm-started denoiser is converted with
        :func:`from_denoiser`. ``None`` initialises from ``config.seed``.
    images : ImageSet, optional
        Clean training images, degraded with ``config.noise``; by default read from the folder ``config.data``.
    data : TrainingData, optional
        Any other source of (input, target) crops (:mod:`napari_pixelrl.core.sources`), e.g. pairs of noisy
        acquisitions; replaces ``images`` and ``config.noise``.
    name, description : str, optional
        Stored in the policy (default name: the run folder's name).

    Raises
    ------
    ValueError
        If ``run_dir`` holds a run with a different configuration, or the data are unusable.
    """

    def __init__(
        self,
        config: TrainConfig,
        run_dir: str | os.PathLike[str],
        initial: Policy | None = None,
        images: ImageSet | None = None,
        name: str | None = None,
        description: str = "",
        data: TrainingData | None = None,
    ) -> None:
        self.config = config
        self.name, self.description = name or Path(run_dir).name, description
        self.run_dir = Path(run_dir)
        # Under torchrun: one replica of a data-parallel run (core/distributed.py); otherwise rank 0 of 1.
        self.replicas = Replicas.from_env()
        self.device = self.replicas.join(resolve_device(config.device))
        self.config = config = replace(config, precision=usable_precision(config.precision, self.device))
        self.rows = self.replicas.rows(config.batch_size)
        self.network_dtype = PRECISIONS[config.precision]
        if initial is not None:
            self.action_set, model_config = initial.action_set, initial.model.config
            weights = initial.model.state_dict()
            self._history = list(initial.training.get("stages", []))
            from_trunk = bool(self._history) and self._history[-1].get("objective") == "denoiser"
            if from_trunk and config.objective != "denoiser" and config.action_set != self.action_set.name:
                # A denoiser never trained its policy head: a policy of any action set may grow from its trunk.
                self.action_set = get_action_set(config.action_set)
                model_config = replace(model_config, n_actions=len(self.action_set))
                fresh = _seeded(model_config, config.seed).state_dict()
                weights.update({key: fresh[key] for key in fresh if key.startswith("policy_head.")})
            model = _seeded(model_config, config.seed)
            model.load_state_dict(weights)
            if from_trunk and config.objective != "denoiser":
                from_denoiser(model, config.seed)
        else:
            self.action_set = get_action_set(config.action_set)
            model = _seeded(config.model, config.seed)
            self._history = []
        wanted = {"n_actions": len(self.action_set), "in_channels": self.action_set.channels}
        if any(getattr(model.config, key) != value for key, value in wanted.items()):
            fix = ", ".join(f"{key}={value}" for key, value in wanted.items())
            raise ValueError(
                f"the model has {model.config.n_actions} action channels and {model.config.in_channels} input "
                f"channel(s); action set {self.action_set.name!r} needs {len(self.action_set)} and "
                f"{self.action_set.channels}: train with model=ModelConfig({fix})"
            )
        if data is None:
            if images is None:
                images = ImageSet.from_folder(config.data, config.validation_images, channels=self.action_set.channels)
            data = SyntheticNoise(images, config.noise, config.max_rotation, config.flip, config.quarter_turns)
        self.data = data
        self.model = model.to(self.device, memory_format=torch.channels_last).train()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.rng = np.random.default_rng(config.seed)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(config.seed)
        self.episode, self.seconds, self.last_validation = 0, 0.0, None
        self.segments: list[dict] = []
        """Stretches of episodes run on one machine at one precision: machine, precision, first and last episode,
        seconds (a stage resumed on another host, or at another precision, gets a new segment)."""
        self._stop_requested = False
        self._commit, self._machine = source_commit(), describe_machine(self.device)
        self.validation = data.validation(config.validation_crop, config.seed)
        for pair in self.validation[:1]:
            channels = 1 if pair.input.ndim == 2 else pair.input.shape[0]
            if channels != self.action_set.channels:
                kinds = {1: "grayscale", 3: "RGB"}
                raise ValueError(
                    f"the training images are {kinds.get(channels, channels)} but action set "
                    f"{self.action_set.name!r} works on {kinds[self.action_set.channels]} images; train a "
                    f"{kinds[self.action_set.channels]} policy on {kinds[self.action_set.channels]} data"
                )
        if (self.run_dir / STATE_FILE).exists():
            self._resume()

    # -- running ---------------------------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Ask :meth:`run` to stop after the current episode (and checkpoint); safe to call from another thread."""
        self._stop_requested = True

    def run(self) -> Iterator[TrainUpdate]:
        """Train until ``config.episodes`` are done or a stop is requested, yielding after every episode.

        Closing the generator (``break`` in a ``for`` loop) also stops cleanly: the last finished episode is
        checkpointed, so a later :class:`Trainer` on the same ``run_dir`` continues from there.
        """
        cfg = self.config
        saved = self.episode
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            while self.episode < cfg.episodes and not self._stop_requested:
                update = self._train_one_episode()
                if update.checkpoint:
                    saved = self.episode
                logged = update.episode % cfg.log_every == 0 or update.episode == cfg.episodes
                if self.replicas.is_main and (logged or update.validation_psnr is not None):
                    self._log(update)
                yield update
        finally:  # a finished run, a stop, a closed generator, Ctrl-C or an error: keep every finished episode
            if self.episode > saved and self.replicas.is_main:
                self.save()

    def _train_one_episode(self) -> TrainUpdate:
        cfg = self.config
        start = time.perf_counter()
        lr = cfg.lr * (1.0 - self.episode / cfg.episodes) ** cfg.lr_power
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        noisy_np, target_np = self.data.batch(cfg.batch_size, cfg.crop_size, self.rng)  # every replica draws all
        # the reward's target: clean, or noisy; this replica's rows of the global batch
        clean, noisy = self._tensor(target_np[self.rows]), self._tensor(noisy_np[self.rows])
        self.optimizer.zero_grad(set_to_none=True)
        if cfg.objective == "denoiser":
            psnr_weights = cfg.crop_weights == "psnr"
            weights = crop_weights(clean, noisy, self.action_set, self.replicas) if psnr_weights else 1.0
            with network_autocast(self.device, self.network_dtype):
                loss = denoiser_loss(self.model, clean, noisy, weights)
            mse, initial = float(loss.detach()), float(((noisy - clean) ** 2 * weights).mean())
            result = EpisodeLoss(loss, 0.0, mse, 0.0, 255.0 * (initial - mse), torch.zeros(len(self.action_set)))
        else:
            result = episode_loss(
                self.model, clean, noisy, cfg, self.action_set, self.generator, self.network_dtype, self.replicas
            )
        result.loss.backward()
        average_gradients(self.model, self.replicas)
        self.optimizer.step()
        self.episode += 1
        main = self.replicas.is_main
        validation = None
        if main and cfg.validate_every and (self.episode % cfg.validate_every == 0 or self.episode == cfg.episodes):
            validation = self.last_validation = self.validate()
        elapsed = time.perf_counter() - start
        self.seconds += elapsed
        self._extend_segment(elapsed)
        checkpoint = None
        if main and (self.episode % cfg.checkpoint_every == 0 or self.episode == cfg.episodes):
            checkpoint = str(self.save())
        reported = torch.tensor(
            [float(result.loss.detach()), result.policy_loss, result.value_loss, result.entropy, result.reward],
            dtype=torch.float64,
            device=self.device,
        )
        loss, policy_loss, value_loss, entropy, reward = mean_over_replicas(reported, self.replicas).tolist()
        counts = mean_over_replicas(result.action_counts.double().to(self.device), self.replicas)
        shares = (counts / counts.sum()).tolist() if counts.sum() > 0 else [0.0] * len(counts)
        return TrainUpdate(
            episode=self.episode,
            episodes=cfg.episodes,
            objective=cfg.objective,
            loss=loss,
            policy_loss=policy_loss,
            value_loss=value_loss,
            entropy=entropy,
            reward=reward,
            lr=lr,
            action_shares=tuple(round(s, 5) for s in shares),
            validation_psnr=validation,
            seconds=round(self.seconds, 3),
            checkpoint=checkpoint,
        )

    def _extend_segment(self, seconds: float) -> None:
        here = {"machine": self._machine, "precision": self.config.precision}
        last = self.segments[-1] if self.segments else None
        if last is None or last["last_episode"] != self.episode - 1 or any(last[k] != v for k, v in here.items()):
            last = {**here, "first_episode": self.episode, "last_episode": self.episode, "seconds": 0.0}
            self.segments.append(last)
        last["last_episode"] = self.episode
        last["seconds"] = round(last["seconds"] + seconds, 3)

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(array).to(self.device).contiguous(memory_format=torch.channels_last)

    @torch.no_grad()
    def validate(self) -> float:
        """Mean PSNR (dB, paper protocol) of the greedy policy (or the warm-start denoiser) on the validation set."""
        if not self.validation:
            return math.nan
        scores = []
        for pair in self.validation:
            state = self._tensor(pair.input.reshape(1, -1, *pair.input.shape[-2:]))  # (H, W) or (C, H, W)
            if self.config.objective == "denoiser":
                restored = denoised(self.model, state).clamp(0.0, 1.0)
            else:
                steps = episode_steps(
                    self.model, state, self.action_set, self.config.steps, network_dtype=self.network_dtype
                )
                restored = collect_episode(steps).image
            scores.append(psnr(restored[0].float().cpu().numpy().reshape(pair.reference.shape), pair.reference))
        return round(float(np.mean(scores)), 4)

    # -- saving and resuming ---------------------------------------------------------------------------------------

    def policy(self) -> Policy:
        """The current network as a :class:`Policy` whose training record lists every stage that made it."""
        cfg = self.config
        stage = {
            "objective": cfg.objective,
            "config": cfg.to_dict(),
            "episodes_done": self.episode,
            "wall_seconds": round(self.seconds, 1),
            "machine": self._machine,
            "segments": [dict(s) for s in self.segments],
            "seed": cfg.seed,
            "data": self.data.record(),
            "validation_psnr": self.last_validation,
            "source_commit": self._commit,
        }
        return Policy(
            model=self.model,
            action_set=self.action_set,
            steps=cfg.steps,
            noise_model=cfg.noise,
            name=self.name,
            training={"stages": [*self._history, stage]},
            source=str(self.run_dir / POLICY_FILE),
            description=self.description,
        )

    def save(self) -> Path:
        """Write ``policy.safetensors`` and then ``trainer_state.safetensors`` (both atomically); return the former."""
        path = save_checkpoint(self.policy(), self.run_dir / POLICY_FILE)
        tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        optimizer = self.optimizer.state_dict()
        for index, state in optimizer["state"].items():
            for key, value in state.items():
                tensors[f"optimizer.{index}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
        tensors["torch_generator"] = self.generator.get_state()
        meta = {
            "episode": self.episode,
            "seconds": self.seconds,
            "last_validation": self.last_validation,
            "numpy_rng": self.rng.bit_generator.state,
            "param_groups": optimizer["param_groups"],
            "config": self.config.to_dict(),
            "device_type": self.device.type,
            "segments": self.segments,
        }
        write_safetensors(tensors, self.run_dir / STATE_FILE, {"trainer_state": json.dumps(meta)})
        return path

    def _resume(self) -> None:
        path = self.run_dir / STATE_FILE
        try:
            with safe_open(path, framework="pt") as file:
                meta = json.loads((file.metadata() or {})["trainer_state"])
                tensors = {key: file.get_tensor(key) for key in file.keys()}
            saved = TrainConfig.from_dict(meta["config"])
        except (SafetensorError, OSError, KeyError, ValueError, TypeError) as err:
            raise CheckpointError(f"{path} is not a readable trainer state ({err}); use a new run folder") from err
        changed = changed_fields(self.config, saved, self.run_dir)  # RESUMABLE_CHANGES are kept in segments
        if changed:
            raise ValueError(
                f"{self.run_dir} holds a run with a different configuration ({', '.join(changed)} differ); "
                "resume it with its own configuration or train into a new folder"
            )
        if meta["device_type"] != self.device.type:
            raise ValueError(
                f"{self.run_dir} was trained on {meta['device_type']}; resume it on the same kind of device for an "
                "exact continuation (or start a new run from its policy.safetensors with init=...)"
            )
        self.model.load_state_dict({k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")})
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith("optimizer."):
                _, index, name = key.split(".", 2)
                state.setdefault(int(index), {})[name] = value
        self.optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
        self.generator.set_state(tensors["torch_generator"])
        self.rng.bit_generator.state = meta["numpy_rng"]
        self.episode, self.seconds, self.last_validation = meta["episode"], meta["seconds"], meta["last_validation"]
        self.segments = meta.get("segments", [])
        if self.replicas.is_main:
            self._truncate_log()

    def _log(self, update: TrainUpdate) -> None:
        with open(self.run_dir / LOG_FILE, "a") as log:
            log.write(json.dumps(asdict(update)) + "\n")

    def _truncate_log(self) -> None:
        # Episodes after the last checkpoint are trained again on resume; drop their old log lines.
        log = self.run_dir / LOG_FILE
        if not log.exists():
            return
        kept = [line for line in log.read_text().splitlines() if line and json.loads(line)["episode"] <= self.episode]
        write_atomically(log, lambda tmp: tmp.write_text("".join(line + "\n" for line in kept)))


def stage_finished(config: TrainConfig, run_dir: str | os.PathLike[str]) -> bool:
    """Whether ``run_dir`` holds this stage's finished policy, even without its resume state.

    True when ``policy.safetensors``' record ends with a stage of this configuration (up to
    :data:`~.config.RESUMABLE_CHANGES`) that ran all its episodes: a multi-stage recipe may then drop finished
    stages' ``trainer_state.safetensors`` (a few MB each) and still resume at the first unfinished stage.
    """
    path = Path(run_dir) / POLICY_FILE
    if not path.is_file():
        return False
    try:
        stages = read_header(path).get("training", {}).get("stages", [])
        last = stages[-1]
        done = TrainConfig.from_dict(last["config"])
    except (CheckpointError, IndexError, KeyError, TypeError, ValueError):
        return False
    return not changed_fields(config, done, run_dir) and last.get("episodes_done") == config.episodes


def changed_fields(config: TrainConfig, saved: TrainConfig, run_dir: str | os.PathLike[str]) -> list[str]:
    """The fields in which ``config`` differs from the ``saved`` configuration of the run in ``run_dir``.

    Fields that a run may resume with changed (:data:`~.config.RESUMABLE_CHANGES`) are left out, and so is an
    ``init`` that names the same earlier stage of a recipe whose folder has since moved: a stage that starts from a
    sibling stage's policy (``<run>/stage1-lookahead/policy.safetensors``) records that path, and the whole run folder
    may be moved (into the repository, to continue in a later session) without changing the run.
    """
    ours, theirs = config.to_dict(), saved.to_dict()
    changed = sorted(key for key in ours if key not in RESUMABLE_CHANGES and ours[key] != theirs[key])
    if "init" in changed and _same_sibling_stage(config.init, saved.init, Path(run_dir)):
        changed.remove("init")
    return changed


def _same_sibling_stage(init: str | None, saved_init: str | None, run_dir: Path) -> bool:
    """Whether ``init`` is a policy in a sibling folder of ``run_dir`` that ``saved_init`` named by the same
    stage folder and file name."""
    if init is None or saved_init is None:
        return False
    ours, theirs = Path(init), Path(saved_init)
    sibling = ours.parent.parent.resolve() == run_dir.parent.resolve()
    return sibling and ours.parent.name != run_dir.name and ours.parts[-2:] == theirs.parts[-2:]


def saved_config(run_dir: str | os.PathLike[str]) -> TrainConfig:
    """The configuration of the run whose resume state is in ``run_dir``.

    Raises
    ------
    CheckpointError
        If there is no readable trainer state there.
    """
    path = Path(run_dir) / STATE_FILE
    try:
        with safe_open(path, framework="pt") as file:
            return TrainConfig.from_dict(json.loads((file.metadata() or {})["trainer_state"])["config"])
    except (SafetensorError, OSError, KeyError, ValueError, TypeError) as err:
        raise CheckpointError(f"{path} is not a readable trainer state ({err}); use a new run folder") from err


def read_log(run_dir: str | os.PathLike[str]) -> list[TrainUpdate]:
    """The :class:`TrainUpdate` records of a run, in order."""
    path = Path(run_dir) / LOG_FILE
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [TrainUpdate(**{**r, "action_shares": tuple(r["action_shares"])}) for r in records]
