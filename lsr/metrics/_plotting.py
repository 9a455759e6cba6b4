"""Figures of the metrics, drawn with matplotlib (imported only when a figure is asked for).

The figures are meant to be read where they end up, in a README or a paper:

* every axis says what it measures and in which unit;
* colours come from one palette, Okabe & Ito's (2008) "Color Universal Design" set,
  which stays distinguishable under the common colour-vision deficiencies; marker shapes
  and hatching repeat what the colours say, so a greyscale print keeps it too;
* no text is smaller than 10 pt at the default figure sizes, which are saved at
  ``SAVE_DPI`` so that the PNG is about 600 pixels wide: shown at README width (about
  800 pixels) it is not scaled down, and the 10 pt text is about 17 pixels high.

Figures are built on a bare ``matplotlib.figure.Figure`` (no pyplot): no GUI backend is
started and no global state changes.
"""

from __future__ import annotations

from typing import Any

from lsr._checks import is_integer_dtype
from lsr._compat import array_namespace
from lsr._validation import fail_value
from lsr.metrics._calibration import reliability_diagram
from lsr.metrics._inputs import check_bool
from lsr.metrics._projection import project_with_templates

__all__ = [
    "OKABE_ITO",
    "plot_penultimate_projection",
    "plot_reliability_diagram",
]

# Okabe & Ito (2008), "Color Universal Design (CUD): how to make figures and
# presentations that are friendly to colorblind people". Every colour drawn comes from here.
OKABE_ITO = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky blue": "#56B4E9",
    "bluish green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish purple": "#CC79A7",
}
CLASS_COLORS = (OKABE_ITO["blue"], OKABE_ITO["orange"], OKABE_ITO["bluish green"])
CLASS_MARKERS = ("o", "s", "^")

TEXT_SIZE = 10  # ticks, legends: the smallest text of a figure
LABEL_SIZE = 11
TITLE_SIZE = 12
SAVE_DPI = 120

CONFIDENCE_LABEL = "confidence (top-class probability)"
# Reliability diagram over confidence histogram: the histogram is context, not the result.
HEIGHT_RATIOS = (3.5, 1.0)


def _matplotlib_figure(function: str) -> Any:
    """matplotlib's ``Figure`` class, imported on demand (Agg canvas, no pyplot state)."""
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(
            f"lsr.metrics.{function} needs matplotlib, an optional dependency: install it "
            "with `pip install matplotlib` (or lsr's `plot` extra). The metrics themselves "
            "do not need it."
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


def _finish(figure: Any, ax: Any, title: str | None, save_path: Any) -> Any:
    if title:
        ax.set_title(title, fontsize=TITLE_SIZE)
    if save_path is not None:
        figure.savefig(save_path, dpi=SAVE_DPI, bbox_inches="tight")
    return figure


def _diagram_axes(ax: Any, histogram: bool) -> tuple[Any, Any, Any]:
    """(figure, diagram axes, histogram axes or None), made or placed as documented."""
    if ax is None:
        figure = _matplotlib_figure("plot_reliability_diagram")(
            figsize=(4.8, 5.6) if histogram else (4.8, 4.6), layout="constrained"
        )
        if not histogram:
            return figure, figure.add_subplot(), None
        ax, counts_ax = figure.subplots(2, 1, sharex=True, height_ratios=HEIGHT_RATIOS)
        return figure, ax, counts_ax
    figure = ax.figure
    if not histogram:
        return figure, ax, None
    slot = ax.get_subplotspec()
    if slot is not None:
        # A grid cell: split it, so that constrained and tight layouts place both axes.
        top, bottom = slot.subgridspec(2, 1, height_ratios=HEIGHT_RATIOS, hspace=0.08)
        ax.set_subplotspec(top)
        return figure, ax, figure.add_subplot(bottom, sharex=ax)
    # An axes placed by a rectangle: split the rectangle the same way.
    x, y, width, height = ax.get_position().bounds
    share = HEIGHT_RATIOS[1] / sum(HEIGHT_RATIOS)
    gap = 0.04 * height
    ax.set_position((x, y + share * height + gap, width, (1 - share) * height - gap))
    return figure, ax, figure.add_axes((x, y, width, share * height), sharex=ax)


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
    histogram: bool = True,
    binning: str = "equal_width",
    sample_weight: Any = None,
) -> Any:
    """Draw a reliability diagram (needs matplotlib): accuracy per confidence bin.

    Bars show each bin's accuracy, hatched vermillion bars the gap to its mean confidence,
    the dashed diagonal perfect calibration; the legend gives the ECE. Under the diagram,
    a histogram on the same confidence axis shows the fraction of the examples in each
    bin, so that a reader sees which bars rest on many examples. Computed by
    ``reliability_diagram`` with the same arguments. Colours are from Okabe & Ito's
    colour-blind-safe palette; text is at least 10 pt.

    Args:
        logits_or_probs, labels, n_bins, from_logits: as in ``reliability_diagram``.
        bin_edges, axis, sample_weight: as in ``reliability_diagram``.
        binning: as in ``reliability_diagram`` (with equal-mass bins each bar spans its
            bin, so bars have different widths).
        ax: a matplotlib ``Axes`` to draw on (e.g. one panel of a larger figure);
            default: a new 4.8 x 5.6 inch figure (4.8 x 4.6 without the histogram) with
            constrained layout, created without pyplot, so no global state changes.
        title: the diagram's title.
        save_path: if given, the figure is saved there (PNG for a ``.png`` name), at
            120 dpi.
        histogram: draw the confidence histogram, a second axes below the diagram
            that shares its x axis and carries the x label (the diagram's own x tick
            labels are hidden). On a new figure it is ``figure.axes[1]``. With ``ax=``,
            the space of ``ax`` is split: ``ax`` keeps the top 3.5/4.5 of it and the
            histogram, a new axes of the same figure, takes the rest. For an ``ax`` in
            a grid (``Figure.subplots``, ``add_subplot``, a ``GridSpec``) its cell is
            divided by a nested grid, so constrained and tight layouts keep working;
            for an ``ax`` placed by a rectangle (``Figure.add_axes``), the rectangle is.
            Either way the histogram axes is labelled ``"confidence histogram"``
            (``Axes.get_label``). ``histogram=False`` draws the diagram alone, on
            ``ax`` unchanged.

    Returns:
        The matplotlib ``Figure``.

    Raises:
        ImportError: matplotlib is not installed.
    """
    check_bool("histogram", histogram)
    diagram = reliability_diagram(
        logits_or_probs,
        labels,
        n_bins=n_bins,
        from_logits=from_logits,
        bin_edges=bin_edges,
        axis=axis,
        binning=binning,
        sample_weight=sample_weight,
    )
    figure, ax, counts_ax = _diagram_axes(ax, histogram)
    import numpy as np

    confidence, accuracy, count, edges, fraction = (_to_numpy(a) for a in diagram)
    occupied = count > 0
    ece = float(np.sum(fraction * np.abs(accuracy - confidence)))
    lefts, width = edges[:-1], np.diff(edges)
    ax.bar(
        lefts[occupied],
        accuracy[occupied],
        width=width[occupied],
        align="edge",
        color=OKABE_ITO["blue"],
        edgecolor=OKABE_ITO["black"],
        linewidth=0.8,
        label="accuracy",
    )
    ax.bar(
        lefts[occupied],
        confidence[occupied] - accuracy[occupied],
        bottom=accuracy[occupied],
        width=width[occupied],
        align="edge",
        color=OKABE_ITO["vermillion"],
        alpha=0.45,
        edgecolor=OKABE_ITO["vermillion"],
        hatch="//",
        linewidth=0.8,
        label=f"gap (ECE = {ece:.3f})",
    )
    ax.plot(
        [0, 1],
        [0, 1],
        linestyle="--",
        color=OKABE_ITO["black"],
        linewidth=1.2,
        label="perfect calibration",
    )
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.0)
    ax.set_ylabel("accuracy (fraction correct)", fontsize=LABEL_SIZE)
    ax.tick_params(labelsize=TEXT_SIZE)
    ax.legend(loc="upper left", fontsize=TEXT_SIZE)
    if counts_ax is None:
        ax.set_xlabel(CONFIDENCE_LABEL, fontsize=LABEL_SIZE)
    else:
        ax.tick_params(labelbottom=False)
        counts_ax.set_label("confidence histogram")
        counts_ax.bar(
            lefts,
            fraction,
            width=width,
            align="edge",
            color=OKABE_ITO["sky blue"],
            edgecolor=OKABE_ITO["black"],
            linewidth=0.8,
        )
        counts_ax.set_ylim(0.0, 1.1 * float(np.max(fraction)))
        counts_ax.set_xlabel(CONFIDENCE_LABEL, fontsize=LABEL_SIZE)
        counts_ax.set_ylabel("fraction of\nexamples", fontsize=LABEL_SIZE)
        counts_ax.tick_params(labelsize=TEXT_SIZE)
        counts_ax.yaxis.get_major_locator().set_params(nbins=3)
    return _finish(figure, ax, title, save_path)


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
    are drawn, each class in its own colour (Okabe & Ito's blue, orange and bluish
    green) and marker shape; black-edged crosses mark the templates ``t_k`` themselves.
    The axes are the plane's orthonormal basis: x points from the first class's template
    to the second's, y along the part of the direction to the third's that is orthogonal
    to x. Coordinates are in the features' own units, measured from the first template,
    with the same scale on both axes. Text is at least 10 pt.

    Args:
        features: (N, D) penultimate-layer activations.
        labels: (N,) integer class ids of the examples.
        class_weights, classes, class_axis: as in ``penultimate_projection``.
        ax: a matplotlib ``Axes`` to draw on; default: a new 5 x 5 inch figure with
            constrained layout (no pyplot).
        title: the axes' title.
        save_path: if given, the figure is saved there (PNG for a ``.png`` name), at
            120 dpi.

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
    if ax is None:
        figure = _matplotlib_figure("plot_penultimate_projection")(
            figsize=(5.0, 5.0), layout="constrained"
        )
        ax = figure.add_subplot()
    figure = ax.figure
    from matplotlib.lines import Line2D

    coords = _to_numpy(projection.coords)
    labels, template_coords = _to_numpy(labels), _to_numpy(template_coords)
    first, second, third = (int(c) for c in classes)
    for class_id, color, marker, point in zip(
        (first, second, third), CLASS_COLORS, CLASS_MARKERS, template_coords, strict=True
    ):
        chosen = labels == class_id
        ax.scatter(
            coords[chosen, 0],
            coords[chosen, 1],
            s=12,
            alpha=0.6,
            marker=marker,
            color=color,
            linewidths=0,
            label=f"class {class_id}",
        )
        ax.scatter(point[0], point[1], marker="X", s=150, color=color, edgecolor=OKABE_ITO["black"])
    template_handle = Line2D(
        [],
        [],
        linestyle="none",
        marker="X",
        markersize=5,
        markerfacecolor="none",
        markeredgecolor=OKABE_ITO["black"],
        label="template $t_k$ of class $k$",
    )
    handles, _ = ax.get_legend_handles_labels()
    ax.legend(handles=[*handles, template_handle], loc="best", fontsize=TEXT_SIZE, markerscale=2.0)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel(f"along $t_{{{second}}} - t_{{{first}}}$ (feature units)", fontsize=LABEL_SIZE)
    ax.set_ylabel(f"towards $t_{{{third}}}$, orthogonalized", fontsize=LABEL_SIZE)
    ax.tick_params(labelsize=TEXT_SIZE)
    return _finish(figure, ax, title, save_path)
