"""Figures of the metrics, drawn with matplotlib (imported only when a figure is asked for).

Figures are built on a bare ``matplotlib.figure.Figure`` (no pyplot): no GUI backend is
started and no global state changes.
"""

from __future__ import annotations

from typing import Any

from lsr._checks import is_integer_dtype
from lsr._compat import array_namespace
from lsr._validation import fail_value
from lsr.metrics._calibration import reliability_diagram
from lsr.metrics._projection import project_with_templates

__all__ = ["plot_penultimate_projection", "plot_reliability_diagram"]


def _matplotlib_figure(function: str) -> Any:
    """matplotlib's ``Figure`` class, imported on demand (Agg canvas, no pyplot state)."""
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(
            f"lsr.metrics.{function} needs matplotlib, an optional dependency: install it "
            "with `pip install 'lsr[plot]'` (or `pip install matplotlib`). The metrics "
            "themselves do not need it."
        ) from error
    return Figure


def _to_numpy(array: Any) -> Any:
    """A host NumPy copy of an array of any supported library (for plotting only)."""
    import numpy as np

    if hasattr(array, "detach"):  # torch: leave autograd, move to host
        array = array.detach().cpu()
    if hasattr(array, "numpy") and not isinstance(array, np.ndarray):
        try:
            return np.asarray(array.numpy())
        except (TypeError, AttributeError, RuntimeError):
            pass
    try:
        return np.from_dlpack(array)
    except (TypeError, AttributeError, BufferError, RuntimeError):
        return np.asarray(array)


def _new_axes(function: str, ax: Any, figsize: tuple[float, float]) -> tuple[Any, Any]:
    if ax is not None:
        return ax.figure, ax
    figure = _matplotlib_figure(function)(figsize=figsize)
    return figure, figure.add_subplot()


def plot_reliability_diagram(
    logits_or_probs: Any,
    labels: Any,
    *,
    n_bins: int = 15,
    from_logits: bool = True,
    bin_edges: str = "right",
    axis: int = -1,
    ax: Any = None,
    title: str | None = None,
    save_path: Any = None,
) -> Any:
    """Draw a reliability diagram (needs matplotlib): accuracy per confidence bin.

    Bars show each bin's accuracy, red bars the gap to its mean confidence, the dashed
    diagonal perfect calibration; the legend gives the ECE. Computed by
    ``reliability_diagram`` with the same arguments.

    Args:
        logits_or_probs, labels, n_bins, from_logits, bin_edges, axis: as in
            ``reliability_diagram``.
        ax: a matplotlib ``Axes`` to draw on (e.g. one panel of a larger figure);
            default: a new figure (created without pyplot, so no global state changes).
        title: the axes' title.
        save_path: if given, the figure is saved there (PNG for a ``.png`` name).

    Returns:
        The matplotlib ``Figure``.

    Raises:
        ImportError: matplotlib is not installed.
    """
    diagram = reliability_diagram(
        logits_or_probs,
        labels,
        n_bins=n_bins,
        from_logits=from_logits,
        bin_edges=bin_edges,
        axis=axis,
    )
    figure, ax = _new_axes("plot_reliability_diagram", ax, (4.0, 4.0))
    import numpy as np

    confidence, accuracy, count, edges = (_to_numpy(a) for a in diagram)
    occupied = count > 0
    ece = float(np.sum(count * np.abs(accuracy - confidence)) / np.sum(count))
    lefts, width = edges[:-1], 1.0 / n_bins
    ax.bar(
        lefts[occupied],
        accuracy[occupied],
        width=width,
        align="edge",
        color="tab:blue",
        edgecolor="black",
        label="accuracy",
    )
    ax.bar(
        lefts[occupied],
        confidence[occupied] - accuracy[occupied],
        bottom=accuracy[occupied],
        width=width,
        align="edge",
        color="tab:red",
        alpha=0.35,
        edgecolor="tab:red",
        label=f"gap (ECE = {ece:.3f})",
    )
    ax.plot([0, 1], [0, 1], linestyle="--", color="gray", label="perfect calibration")
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    if title:
        ax.set_title(title)
    ax.legend(loc="upper left", fontsize="small")
    if save_path is not None:
        figure.savefig(save_path, dpi=120, bbox_inches="tight")
    return figure


def plot_penultimate_projection(
    features: Any,
    labels: Any,
    class_weights: Any,
    classes: Any,
    *,
    class_axis: int | None = None,
    ax: Any = None,
    title: str | None = None,
    save_path: Any = None,
) -> Any:
    """Scatter the examples of three classes in the plane of their templates (matplotlib).

    Müller et al. (2019), Figure 1. Only the examples whose label is one of ``classes``
    are drawn, coloured by class; crosses mark the templates themselves.

    Args:
        features: (N, D) penultimate-layer activations.
        labels: (N,) integer class ids of the examples.
        class_weights, classes, class_axis: as in ``penultimate_projection``.
        ax: a matplotlib ``Axes`` to draw on; default: a new figure (no pyplot).
        title: the axes' title.
        save_path: if given, the figure is saved there (PNG for a ``.png`` name).

    Returns:
        The matplotlib ``Figure``.

    Raises:
        ImportError: matplotlib is not installed.
    """
    xp = array_namespace(features, labels, class_weights)
    if not is_integer_dtype(xp, labels.dtype) or tuple(labels.shape) != tuple(features.shape[:1]):
        fail_value(
            "`labels` must be (N,) integer class ids, one per feature row.", "labels", labels
        )
    projection, template_coords = project_with_templates(
        features, class_weights, classes, class_axis=class_axis
    )
    figure, ax = _new_axes("plot_penultimate_projection", ax, (4.5, 4.5))
    coords = _to_numpy(projection.coords)
    labels, template_coords = _to_numpy(labels), _to_numpy(template_coords)
    colors = ("tab:blue", "tab:orange", "tab:green")
    for class_id, color, point in zip(classes, colors, template_coords, strict=True):
        chosen = labels == class_id
        ax.scatter(
            coords[chosen, 0],
            coords[chosen, 1],
            s=6,
            alpha=0.5,
            color=color,
            label=f"class {class_id}",
        )
        ax.scatter(point[0], point[1], marker="X", s=120, color=color, edgecolor="black")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("basis 1")
    ax.set_ylabel("basis 2")
    if title:
        ax.set_title(title)
    ax.legend(loc="best", fontsize="small", markerscale=2.0)
    if save_path is not None:
        figure.savefig(save_path, dpi=120, bbox_inches="tight")
    return figure
