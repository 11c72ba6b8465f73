"""An independent NumPy + OpenCV PixelRL episode, written from the paper and the release's layer names only.

It reads the authors' ``.npz`` by its own keys (not through our importer), convolves with NumPy and applies the
actions with OpenCV, as the authors' Chainer code does, so it shares no code with ``napari_pixelrl``.
"""

from __future__ import annotations

import cv2
import numpy as np


def conv3x3(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, dilation: int) -> np.ndarray:
    """Zero-padded 3x3 cross-correlation of ``x`` (C, H, W) with ``weight`` (O, C, 3, 3)."""
    _, height, width = x.shape
    padded = np.pad(x, ((0, 0), (dilation, dilation), (dilation, dilation)))
    out = np.zeros((weight.shape[0], height, width), np.float32)
    for ky in range(3):
        for kx in range(3):
            window = padded[:, ky * dilation : ky * dilation + height, kx * dilation : kx * dilation + width]
            out += np.tensordot(weight[:, :, ky, kx], window, axes=(1, 0))
    return out if bias is None else out + bias[:, None, None]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):  # exp overflows to inf for very negative x: the sigmoid is then 0
        return 1.0 / (1.0 + np.exp(-x))


def policy_step(w: dict[str, np.ndarray], image: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Greedy actions (H, W) and the new GRU state for one step of the released network."""
    relu = lambda x: np.maximum(x, 0)  # noqa: E731
    f = relu(conv3x3(image[None], w["conv1/W"], w["conv1/b"], 1))
    for name, dilation in (("diconv2", 2), ("diconv3", 3), ("diconv4", 4), ("diconv5_pi", 3), ("diconv6_pi", 2)):
        f = relu(conv3x3(f, w[f"{name}/diconv/W"], w[f"{name}/diconv/b"], dilation))
    c = lambda key, x: conv3x3(x, w[f"conv7_{key}/W"], None, 1)  # noqa: E731
    z = _sigmoid(c("Wz", f) + c("Uz", h))
    r = _sigmoid(c("Wr", f) + c("Ur", h))
    h_tilde = np.tanh(c("W", f) + c("U", r * h))
    h = (1 - z) * h + z * h_tilde
    logits = conv3x3(h, w["conv8_pi/model/W"], w["conv8_pi/model/b"], 1)
    return logits.argmax(0), h


def apply_actions(image: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """The nine denoising actions with OpenCV, as in the authors' State.step."""
    candidates = [
        image - 1 / 255,
        image,
        image + 1 / 255,
        cv2.GaussianBlur(image, (5, 5), 0.5),
        cv2.bilateralFilter(image, 5, 0.1, 5),
        cv2.medianBlur(image, 5),
        cv2.GaussianBlur(image, (5, 5), 1.5),
        cv2.bilateralFilter(image, 5, 1.0, 5),
        cv2.boxFilter(image, -1, (5, 5)),
    ]
    return np.choose(actions, candidates).astype(np.float32)


def run_episode(w: dict[str, np.ndarray], noisy: np.ndarray, steps: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Final image clipped to [0, 1] and the (steps, H, W) action maps."""
    image = noisy.astype(np.float32)
    h = np.zeros((w["conv7_U/W"].shape[0], *image.shape), np.float32)
    maps = []
    for _ in range(steps):
        actions, h = policy_step(w, image, h)
        image = apply_actions(image, actions)
        maps.append(actions)
    return np.clip(image, 0, 1), np.stack(maps)
