"""From a :class:`~napari_pixelrl.api.Restoration` to napari layers, and back to the same layers on a re-run.

Three layers per restored source layer, tagged in ``metadata["napari_pixelrl"]`` with their role and the source
layer's id, so that restoring the same layer again updates them (keeping the user's display settings):

* the restored image, in the source's units, with its scale, translate, colormap and contrast limits;
* the action map, a Labels layer ``(steps, H, W)``: label ``a + 1`` is action ``a`` (napari keeps 0 for
  "no label"), each action in its fixed colour, its name shown under the cursor through the layer's features;
* the value map, an Image layer ``(steps, H, W)`` with the critic's ``V(s_t)`` per pixel. Its values shrink
  by orders of magnitude from the first step to the last, so its contrast follows the step slider: the 1st to
  99th percentile of the step on show (:func:`step_contrast_limits`).

A stack keeps its axes, scale and units in the maps, with the step axis just before the image's own two axes
(``(z, step, y, x)``); an RGB image's colour channels become the maps' first axis (``(channel, step, y, x)``).
"""

from __future__ import annotations

import math
import weakref
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from napari.layers import Image, Labels, Layer
from napari.utils.colormaps import DirectLabelColormap
from napari.viewer import Viewer

from ..api import Restoration, check_image, load_policy, restore
from ..core.actions import ActionSet
from ..core.checkpoint import Policy
from ..core.inference import image_layout

__all__ = [
    "LayerData",
    "RestoredLayers",
    "action_colormap",
    "layer_data",
    "layer_image",
    "restore_layer",
    "result_layers",
    "show_restoration",
    "step_contrast_limits",
]

METADATA_KEY = "napari_pixelrl"
_ROLES = {"image": "restored", "actions": "actions", "values": "values"}
"""Field of :class:`RestoredLayers` -> role in the layer's metadata."""
_TRANSPARENT = (0.0, 0.0, 0.0, 0.0)
_STEP_LIMITS = "step_contrast_limits"
"""Key, in a value map's metadata, of its per-step contrast limits."""
_SAMPLES_PER_STEP = 1 << 20
"""Percentiles of larger steps are taken on an even subsample (every n-th row and column) of about this many."""
_FOLLOWING: weakref.WeakSet = weakref.WeakSet()
"""Viewers whose step slider already sets the value maps' contrast."""


class RestoredLayers(NamedTuple):
    """The layers that show one restoration; ``actions`` and ``values`` are ``None`` when not computed."""

    image: Image
    actions: Labels | None
    values: Image | None


class LayerData(NamedTuple):
    """What PixelRL restores from a layer: its (full-resolution) data, NumPy or lazy, and whether it is RGB(A)."""

    data: Any
    rgb: bool


def layer_data(layer: Layer) -> LayerData:
    """The array that PixelRL restores from ``layer``, with a clear error for anything it cannot take.

    Any number of dimensions (every 2-D plane is restored), RGB(A) channel by channel; multiscale layers give
    their full-resolution level; dask and zarr data stay lazy. The layer is never modified.

    Raises
    ------
    TypeError
        If ``layer`` is not an Image layer.
    ValueError
        For data that :func:`napari_pixelrl.api.check_image` rejects.
    """
    if not isinstance(layer, Image):
        raise TypeError(
            f"layer {layer.name!r} is a {type(layer).__name__} layer; PixelRL restores Image layers. "
            "Pick an image layer."
        )
    data = layer.data[0] if layer.multiscale else layer.data
    try:
        check_image(data, rgb=layer.rgb)
    except ValueError as err:
        raise ValueError(f"layer {layer.name!r}: {err}") from None
    return LayerData(data, bool(layer.rgb))


def layer_image(layer: Layer) -> np.ndarray:
    """The grayscale image, ``(N, H, W)`` stack or RGB(A) image ``(H, W, 3 or 4)`` that the Train panel learns
    from, in memory.

    Raises
    ------
    TypeError, ValueError
        As :func:`layer_data`, and for RGB stacks or more than three dimensions, naming the fix.
    """
    data, rgb = layer_data(layer)
    if rgb and data.ndim > 3:
        raise ValueError(
            f"layer {layer.name!r} is a stack of RGB images {tuple(data.shape)}; colour training takes one RGB "
            "image per layer. Add one image as its own layer first, e.g. viewer.add_image(layer.data[0])."
        )
    if data.ndim > 3:
        raise ValueError(
            f"layer {layer.name!r} has {data.ndim} dimensions {tuple(data.shape)}; training takes 2-D images and "
            "3-D stacks. Add a 3-D part as its own layer first, e.g. viewer.add_image(layer.data[t])."
        )
    return np.asarray(data)


def action_colormap(action_set: ActionSet) -> DirectLabelColormap:
    """Labels colormap with each action's fixed colour at label ``index + 1``; everything else transparent."""
    colors: dict[int | None, tuple[float, ...]] = {None: _TRANSPARENT, 0: _TRANSPARENT}
    for index, (r, g, b) in enumerate(action_set.colors):
        colors[index + 1] = (r / 255, g / 255, b / 255, 1.0)
    return DirectLabelColormap(color_dict=colors)


def _action_features(action_set: ActionSet) -> pd.DataFrame:
    return pd.DataFrame({"index": np.arange(1, len(action_set) + 1), "action": action_set.names})


def step_contrast_limits(values: np.ndarray) -> list[tuple[float, float]]:
    """Contrast limits of a value map, one pair per step: the 1st and 99th percentile of that step's values.

    Parameters
    ----------
    values : np.ndarray
        Value map ``(*stack, steps, H, W)``; the step axis is third from last.

    Returns
    -------
    list of (float, float)
        ``(low, high)`` per step, ``low < high`` (a constant step gets a range of width 1 around its value).
    """
    values = np.asarray(values)
    if values.ndim < 3:
        raise ValueError(f"expected a value map (..., steps, H, W), got shape {values.shape}")
    per_step = values[..., 0, :, :].size
    stride = max(1, math.isqrt(per_step // _SAMPLES_PER_STEP))  # along y and x: no copy of the whole map
    limits = []
    for t in range(values.shape[-3]):
        low, high = (float(v) for v in np.percentile(values[..., t, ::stride, ::stride], [1, 99]))
        limits.append((low, high) if high > low else (low - 0.5, low + 0.5))
    return limits


def _shown_step(viewer: Viewer, layer: Layer) -> int:
    """Index of the step of ``layer`` (a map with its step axis third from last) that the viewer shows."""
    position = layer.world_to_data(viewer.dims.point)
    return int(np.clip(round(float(position[layer.ndim - 3])), 0, layer.data.shape[-3] - 1))


def _follow_step(viewer: Viewer) -> None:
    """Give every value map in ``viewer`` the contrast limits of the step on show."""
    for layer in viewer.layers:
        limits = layer.metadata.get(_STEP_LIMITS)
        if limits is not None:
            layer.contrast_limits = limits[_shown_step(viewer, layer)]


def _tag(role: str, source: Layer, policy: Policy) -> dict:
    return {METADATA_KEY: {"role": role, "source": str(source.unique_id), "policy": policy.name}}


def result_layers(source: Image, result: Restoration, policy: Policy, *, action_map: bool = True) -> RestoredLayers:
    """New (not yet added) layers for ``result``, placed and displayed like ``source`` (no action map layer when
    ``action_map`` is false, no value map layer when ``result.values`` is ``None``)."""
    scale, translate, units = tuple(source.scale), tuple(source.translate), tuple(source.units)
    image = Image(
        result.image,
        rgb=source.rgb,
        name=f"restored: {source.name} ({policy.name})",  # the role first: it tells them apart
        scale=scale,
        translate=translate,
        units=units,
        colormap=source.colormap,
        contrast_limits=source.contrast_limits,
        gamma=source.gamma,
        metadata=_tag("restored", source, policy),
    )

    layout = image_layout(result.image.shape, rgb=source.rgb, channels=policy.action_set.channels)

    def with_steps(values: tuple, step: object, channel: object) -> tuple:
        """The maps' axes, ``(*stack, step, y, x)``, from the layer's (an RGB layer's colour axis is no layer
        axis: it gets ``channel``)."""
        per_axis = (*values, channel) if source.rgb else values
        y, x = layout.plane_axes
        return (*(per_axis[axis] for axis in layout.stack_axes), step, per_axis[y], per_axis[x])

    stack_axes = {
        "scale": with_steps(scale, 1.0, 1.0),
        "translate": with_steps(translate, 0.0, 0.0),
        "units": with_steps(units, "pixel", "pixel"),
        "axis_labels": with_steps(tuple(source.axis_labels), "step", "channel"),
    }
    actions = None
    if action_map:
        actions = Labels(
            np.add(result.actions, 1, dtype=np.uint8),  # one new array, even for 8k x 8k x steps
            name=f"actions: {source.name} ({policy.name})",  # the role first: it tells them apart
            colormap=action_colormap(policy.action_set),
            features=_action_features(policy.action_set),
            opacity=0.7,
            metadata=_tag("actions", source, policy),
            **stack_axes,
        )
    values = None
    if result.values is not None:
        values = Image(
            result.values,
            name=f"values: {source.name} ({policy.name})",  # the role first: it tells them apart
            colormap="viridis",
            visible=False,
            metadata={**_tag("values", source, policy), _STEP_LIMITS: step_contrast_limits(result.values)},
            **stack_axes,
        )
    return RestoredLayers(image, actions, values)


def _find(layers, tag: dict) -> Layer | None:
    role, source = tag[METADATA_KEY]["role"], tag[METADATA_KEY]["source"]
    for layer in layers:
        mine = layer.metadata.get(METADATA_KEY, {})
        if mine.get("role") == role and mine.get("source") == source:
            return layer
    return None


def show_restoration(
    viewer: Viewer, source: Image, result: Restoration, policy: Policy, *, action_map: bool = True
) -> RestoredLayers:
    """Add the layers of ``result`` to ``viewer``, or update the ones an earlier run on ``source`` made.

    Updating keeps the user's display settings (opacity, visibility, the image's contrast) and the layers' places in the
    list; the data, names, scale and translate and the action legend follow the new result. A map that this
    result does not have (not requested this time) is removed, so that no stale map stays behind. The value
    map's contrast limits follow the step slider (the 1st to 99th percentile of the step on show).
    """
    new = result_layers(source, result, policy, action_map=action_map)
    shown = {}
    for role in ("image", "values", "actions"):  # new layers go on top in this order: the action map uppermost
        layer = getattr(new, role)
        old = _find(viewer.layers, _tag(_ROLES[role], source, policy))
        if layer is None:
            if old is not None:
                viewer.layers.remove(old)
            shown[role] = None
            continue
        if old is None:
            shown[role] = viewer.add_layer(layer)
            continue
        old.data = layer.data
        old.scale, old.translate, old.units = layer.scale, layer.translate, layer.units
        old.metadata = layer.metadata
        if isinstance(layer, Labels):
            old.colormap = layer.colormap
            old.features = layer.features
        old.name = layer.name
        shown[role] = old
    if shown["values"] is not None:
        if viewer not in _FOLLOWING:
            ref = weakref.ref(viewer)  # the slider's callback must not keep a closed viewer alive

            def on_step(_event: object) -> None:
                if (alive := ref()) is not None:
                    _follow_step(alive)

            viewer.dims.events.current_step.connect(on_step)
            _FOLLOWING.add(viewer)
        _follow_step(viewer)
    return RestoredLayers(**shown)


def restore_layer(
    viewer: Viewer,
    layer: Image | str,
    policy: Policy | str = "gaussian-25",
    *,
    steps: int | None = None,
    device: str = "auto",
    action_map: bool = True,
    value_map: bool = True,
) -> RestoredLayers:
    """Restore an image layer and show the result, as the Restore widget does, from a script or notebook.

    Runs in the calling thread (the viewer waits). Restoring the same layer again updates the layers of the
    earlier run instead of adding new ones. The source layer is not modified.

    Parameters
    ----------
    viewer : napari.Viewer
        Where the layers go.
    layer : napari.layers.Image or str
        The image layer (2-D, a stack, n-D or RGB), or its name.
    policy : Policy or str
        A policy from :func:`napari_pixelrl.api.load_policy`, or a shipped name or checkpoint path.
    steps : int, optional
        Episode length; default the policy's own.
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``.
    action_map, value_map : bool
        Also add the action map (Labels) and value map (Image) layers, ``(*stack, steps, H, W)``.

    Returns
    -------
    RestoredLayers
        ``(image, actions, values)``; ``actions``/``values`` are ``None`` when not requested.

    Example
    -------
    >>> import napari  # doctest: +SKIP
    >>> from napari_pixelrl.plugin import restore_layer  # doctest: +SKIP
    >>> viewer = napari.Viewer()  # doctest: +SKIP
    >>> clean, noisy = viewer.open_sample("napari-pixelrl", "camera-gaussian-25")  # doctest: +SKIP
    >>> restored, actions, values = restore_layer(viewer, noisy, "gaussian-25")  # doctest: +SKIP
    """
    source = viewer.layers[layer] if isinstance(layer, str) else layer
    image = layer_data(source)
    policy = policy if isinstance(policy, Policy) else load_policy(policy)
    result = restore(image.data, policy, steps=steps, device=device, return_values=value_map, rgb=image.rgb)
    return show_restoration(viewer, source, result, policy, action_map=action_map)
