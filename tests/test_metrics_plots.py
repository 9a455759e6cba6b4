"""What lsr.metrics' figures show (matplotlib, the plot extra).

Collected only where matplotlib is installed (the "all" environment; see
tests/conftest.py), so that no session skips them: elsewhere,
``test_plots_are_saved_as_png`` in tests/test_metrics.py checks the clear ImportError.
"""

from __future__ import annotations

import numpy as np
import pytest

from lsr import metrics
from tests.test_metrics import K, _case, _reference_projection, reference_bins

# -------------------------------------------------------- what the figures show

# Okabe & Ito (2008), "Color Universal Design": the published colour-blind-safe set.
OKABE_ITO_HEX = {
    "#000000",
    "#e69f00",
    "#56b4e9",
    "#009e73",
    "#f0e442",
    "#0072b2",
    "#d55e00",
    "#cc79a7",
}


def _histogram_axes(figure):
    found = [a for a in figure.axes if a.get_label() == "confidence histogram"]
    assert len(found) == 1, [a.get_label() for a in figure.axes]
    return found[0]


def _diagram_axes(figure):
    found = [a for a in figure.axes if a.get_label() != "confidence histogram"]
    assert len(found) == 1
    return found[0]


def _hex(rgba):
    from matplotlib.colors import to_hex

    return to_hex(rgba, keep_alpha=False)


def _png_width(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big")  # IHDR: width, then height


def test_reliability_figure_shows_bin_fractions_under_the_diagram(backend):
    logits, labels = _case(seed=9, n=200)
    n_bins = 10
    figure = metrics.plot_reliability_diagram(
        backend.asarray(logits), backend.asarray(labels), n_bins=n_bins
    )
    diagram, histogram = _diagram_axes(figure), _histogram_axes(figure)
    _, accuracy, count = reference_bins(logits, labels, n_bins, "right")
    heights = [patch.get_height() for patch in histogram.patches]
    np.testing.assert_allclose(heights, count / len(labels), rtol=1e-6)
    lefts = [patch.get_x() for patch in histogram.patches]
    np.testing.assert_allclose(lefts, np.arange(n_bins) / n_bins, atol=1e-9)
    accuracy_bars = diagram.containers[0]
    np.testing.assert_allclose(
        [bar.get_height() for bar in accuracy_bars], accuracy[count > 0], rtol=1e-6
    )
    assert histogram.get_shared_x_axes().joined(histogram, diagram)
    figure.draw_without_rendering()
    assert histogram.get_position().y1 <= diagram.get_position().y0


def test_reliability_figure_axes_say_what_they_measure():
    logits, labels = _case(seed=3)
    figure = metrics.plot_reliability_diagram(logits, labels)
    diagram, histogram = _diagram_axes(figure), _histogram_axes(figure)
    assert "accuracy" in diagram.get_ylabel()
    assert "confidence" in histogram.get_xlabel() and "probability" in histogram.get_xlabel()
    assert "fraction" in histogram.get_ylabel()
    alone = metrics.plot_reliability_diagram(logits, labels, histogram=False)
    assert len(alone.axes) == 1
    assert "confidence" in alone.axes[0].get_xlabel() and alone.axes[0].get_ylabel()


@pytest.mark.parametrize("placement", ["grid", "rectangle"])
def test_reliability_histogram_with_the_callers_axes(placement):
    from matplotlib.figure import Figure

    logits, labels = _case(seed=4)
    figure = Figure(figsize=(8.0, 4.0), layout="constrained" if placement == "grid" else None)
    if placement == "grid":
        ax, other = figure.subplots(1, 2)
    else:
        ax, other = figure.add_axes((0.1, 0.1, 0.35, 0.8)), figure.add_axes((0.6, 0.1, 0.35, 0.8))
    figure.draw_without_rendering()
    before = ax.get_position()
    returned = metrics.plot_reliability_diagram(logits, labels, ax=ax, title="panel")
    assert returned is figure
    histogram = _histogram_axes(figure)
    assert histogram.get_shared_x_axes().joined(histogram, ax)
    assert ax.get_title() == "panel" and "confidence" in histogram.get_xlabel()
    figure.draw_without_rendering()
    diagram_box, histogram_box = ax.get_position(), histogram.get_position()
    assert histogram_box.y1 <= diagram_box.y0  # below the diagram
    assert histogram_box.x1 <= other.get_position().x0  # in the caller's panel, not the next
    if placement == "rectangle":  # the rectangle is shared out, nothing more
        assert diagram_box.y1 == pytest.approx(before.y1)
        assert histogram_box.y0 == pytest.approx(before.y0)
    unchanged = Figure()
    alone = unchanged.add_subplot()
    metrics.plot_reliability_diagram(logits, labels, ax=alone, histogram=False)
    assert unchanged.axes == [alone] and "confidence" in alone.get_xlabel()


def test_figures_use_only_the_colour_blind_safe_palette():
    logits, labels = _case(seed=5)
    figure = metrics.plot_reliability_diagram(logits, labels)
    colours = set()
    for ax in figure.axes:
        colours |= {_hex(patch.get_facecolor()) for patch in ax.patches}
        colours |= {_hex(line.get_color()) for line in ax.lines}
    assert colours and colours <= OKABE_ITO_HEX, colours - OKABE_ITO_HEX

    features, weights = _projection_case()
    figure = metrics.plot_penultimate_projection(features, labels % 3, weights, (0, 1, 2))
    (ax,) = figure.axes
    by_class = {}
    for collection in ax.collections:
        faces = {_hex(face) for face in collection.get_facecolors()}
        assert faces <= OKABE_ITO_HEX, faces - OKABE_ITO_HEX
        if collection.get_label().startswith("class"):
            by_class[collection.get_label()] = faces
    assert sorted(by_class) == ["class 0", "class 1", "class 2"]
    assert len(set.union(*by_class.values())) == 3  # one colour per class


def _projection_case():
    rng = np.random.default_rng(6)
    return rng.normal(size=(64, 6)), rng.normal(size=(K, 6))


def test_projection_figure_marks_templates_and_labels_its_axes():
    features, weights = _projection_case()
    labels = np.arange(len(features)) % 4  # class 3 is not drawn
    figure = metrics.plot_penultimate_projection(features, labels, weights, (2, 0, 1))
    (ax,) = figure.axes
    assert "t_{0} - t_{2}" in ax.get_xlabel() and "units" in ax.get_xlabel()
    assert "t_{1}" in ax.get_ylabel()
    coords, _ = _reference_projection(features, weights[[2, 0, 1]])
    template_coords, _ = _reference_projection(weights[[2, 0, 1]], weights[[2, 0, 1]])
    points = {c.get_label(): c.get_offsets() for c in ax.collections}
    for class_id in (2, 0, 1):
        np.testing.assert_allclose(points[f"class {class_id}"], coords[labels == class_id])
    marked = [c.get_offsets() for c in ax.collections if not c.get_label().startswith("class")]
    np.testing.assert_allclose(np.concatenate(marked), template_coords, atol=1e-12)


def test_figure_text_is_legible_at_readme_width(tmp_path):
    from matplotlib.text import Text

    logits, labels = _case(seed=7)
    features, weights = _projection_case()
    figures = {
        "reliability": metrics.plot_reliability_diagram(
            logits, labels, title="a title", save_path=tmp_path / "reliability.png"
        ),
        "projection": metrics.plot_penultimate_projection(
            features,
            labels % 3,
            weights,
            (0, 1, 2),
            title="a title",
            save_path=tmp_path / "projection.png",
        ),
    }
    for name, figure in figures.items():
        figure.draw_without_rendering()
        texts = [t for t in figure.findobj(Text) if t.get_visible() and t.get_text().strip()]
        assert len(texts) > 10, name  # tick labels, axis labels, legend, title
        smallest = min(t.get_fontsize() for t in texts)
        assert smallest >= 10, (name, smallest)
        # At most README width (about 800 pixels): shown 1:1, 10 pt stays 10 pt at 120 dpi.
        assert 400 <= _png_width(tmp_path / f"{name}.png") <= 800, name
