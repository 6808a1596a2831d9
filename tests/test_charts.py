"""cifar_core.charts: Plotly figures and image grids, each a pure function of numbers, checked value by value."""

import math

import numpy as np
import pytest

from cifar_core import charts

# Drawing: tiles of feature maps and filters, to the pixel.

def test_tile_fills_rows_and_leaves_gaps_white():
    grid = charts.tile(np.array([10, 20, 30], np.uint8).reshape(3, 1, 1), columns=2)
    np.testing.assert_array_equal(grid, [[10, 255, 20], [255, 255, 255], [30, 255, 255]])
    assert charts.tile(np.zeros((3, 2, 2), np.uint8), columns=8).shape == (2, 8)  # no wider than it needs


def test_feature_map_grid_pixels():
    assert charts.VIRIDIS.shape == (256, 3)
    assert charts.VIRIDIS[0].tolist() == [0x44, 0x01, 0x54] and charts.VIRIDIS[-1].tolist() == [0xfd, 0xe7, 0x25]
    maps = np.array([[[-1.0, 0.0], [1.0, 2.0]],  # min-max scaled: 0, 85, 170, 255
                     [[5.0, 5.0], [5.0, 5.0]]])  # constant: all low
    V, W = charts.VIRIDIS, (255, 255, 255)
    expected = np.array([[V[0], V[0], V[85], V[85], W, V[0], V[0], V[0], V[0]],
                         [V[0], V[0], V[85], V[85], W, V[0], V[0], V[0], V[0]],
                         [V[170], V[170], V[255], V[255], W, V[0], V[0], V[0], V[0]],
                         [V[170], V[170], V[255], V[255], W, V[0], V[0], V[0], V[0]]], np.uint8)
    np.testing.assert_array_equal(charts.feature_map_grid(maps, columns=2, scale=2), expected)


def test_feature_map_grid_limit_and_size():
    maps = np.random.default_rng(0).normal(size=(40, 8, 8))
    grid = charts.feature_map_grid(maps)  # the first 32, eight to a row, each 8 x 8 enlarged 6x to 48 x 48
    assert grid.shape == (4 * 48 + 3, 8 * 48 + 7, 3)
    assert charts.feature_map_grid(maps, limit=3, scale=1).shape == (8, 3 * 8 + 2, 3)
    with pytest.raises(ValueError):
        charts.feature_map_grid(maps[:0])


def test_enlarge_is_nearest_neighbour():
    image = np.array([[[1, 2, 3], [4, 5, 6]]], np.uint8)  # 1 x 2 pixels
    big = charts.enlarge(image, 3)
    assert big.shape == (3, 6, 3)
    np.testing.assert_array_equal(big[:, :3], np.broadcast_to([1, 2, 3], (3, 3, 3)))
    np.testing.assert_array_equal(big[:, 3:], np.broadcast_to([4, 5, 6], (3, 3, 3)))


def test_training_curves_place_batches_within_epochs_and_leave_gaps_for_null():
    records = [{"kind": "batch", "epoch": 1, "step": 5, "loss": 2.0, "accuracy": 0.2},
               {"kind": "batch", "epoch": 1, "step": 10, "loss": None, "accuracy": 0.3},
               {"kind": "epoch", "epoch": 1, "step": 10, "loss": 1.5, "accuracy": 0.3, "val_loss": 1.4,
                "val_accuracy": 0.35},
               {"kind": "batch", "epoch": 2, "step": 5, "loss": 1.2, "accuracy": 0.4}]
    train_loss, val_loss = charts.training_curve(records, "loss", steps_per_epoch=10).data
    accuracy = charts.training_curve(records, "accuracy", steps_per_epoch=10)
    train_acc, val_acc = accuracy.data
    assert list(train_loss.x) == [0.5, 1.0, 1.5] and list(train_loss.y) == [2.0, None, 1.2]
    assert train_loss.connectgaps is False
    assert list(val_loss.x) == [1] and list(val_loss.y) == [1.4] and list(val_acc.y) == [0.35]
    assert list(train_acc.y) == [0.2, 0.3, 0.4]
    assert [t.name for t in accuracy.data] == ["train", "validation"]
    # accuracy in percent, as the metrics above the chart say it; loss as a number
    assert accuracy.layout.yaxis.tickformat == ".0%"
    assert charts.training_curve(records, "loss").layout.yaxis.tickformat is None
    assert "%{y:.1%}" in val_acc.hovertemplate and "%{y:.4f}" in val_loss.hovertemplate
    # both figures' epoch axes end at the last point; whole-epoch ticks from two epochs on, fractions before
    assert list(accuracy.layout.xaxis.range) == [0, 1.5] and accuracy.layout.xaxis.dtick == 0.5  # not 0.2 apart
    assert {trace.cliponaxis for trace in accuracy.data} == {False}  # the last marker on the axis's end, whole
    early = [{"kind": "batch", "epoch": 1, "step": 1, "loss": 2.0}]  # no accuracy yet: it had run from -1 to 6
    early_axis = charts.training_curve(early, "accuracy", steps_per_epoch=100).layout.xaxis
    assert list(early_axis.range) == [0, 0.01] and early_axis.dtick is None  # Plotly's ticks, not a lone 0
    many = [{"kind": "epoch", "epoch": e, "step": 1, "val_loss": 1.0} for e in range(1, 31)]
    assert charts.training_curve(many, "loss").layout.xaxis.dtick == 3


def test_an_epoch_a_time_budget_ended_early_is_plotted_where_it_ended():
    records = [{"kind": "epoch", "epoch": 1, "step": 10, "val_loss": 1.4, "val_accuracy": 0.35},
               {"kind": "epoch", "epoch": 2, "step": 4, "val_loss": 1.2, "val_accuracy": 0.4}]
    val_loss = charts.training_curve(records, "loss", steps_per_epoch=10).data[1]
    assert list(val_loss.x) == [1, 1.4]


def test_overlay_curves_one_line_per_run():
    fig = charts.overlay_curves({"a": [{"kind": "epoch", "epoch": 1, "step": 1, "val_accuracy": 0.5}],
                                 "b": [{"kind": "epoch", "epoch": 1, "step": 1, "val_accuracy": 0.6},
                                       {"kind": "epoch", "epoch": 2, "step": 1, "val_accuracy": 0.7}]})
    assert [t.name for t in fig.data] == ["a", "b"] and list(fig.data[1].y) == [0.6, 0.7]
    assert (fig.layout.yaxis.title.text, fig.layout.yaxis.tickformat) == ("validation accuracy", ".1~%")
    assert charts.overlay_curves({}, "loss").layout.yaxis.tickformat is None
    assert (list(fig.layout.xaxis.range), fig.layout.xaxis.dtick) == ([0, 2], 1)  # whole epochs, not 1, 1.5, 2
    # colours as far apart as the Train page's two (Streamlit's palette began with two blues)
    assert list(fig.layout.colorway[:2]) == ["#1F77B4", "#FF7F0E"]


def test_confusion_heatmap_counts_and_row_normalised():
    cm = [[3, 1], [0, 0]]
    counts = charts.confusion_heatmap(cm, ["cat", "dog"]).data[0]
    np.testing.assert_array_equal(counts.z, [[3, 1], [0, 0]])
    assert list(counts.x) == ["cat", "dog"] and list(counts.y) == ["cat", "dog"]
    rows = charts.confusion_heatmap(cm, ["cat", "dog"], normalize=True).data[0]
    np.testing.assert_allclose(rows.z, [[0.75, 0.25], [0.0, 0.0]])  # an empty row stays 0, not NaN
    assert rows.texttemplate == "%{z:.0%}" and counts.texttemplate == "%{z:d}"  # percent, as recall is beside it
    assert charts.confusion_heatmap(cm, ["cat", "dog"], normalize=True).layout.coloraxis.colorbar.tickformat == ".0%"


def test_clickable_cells_put_one_invisible_marker_on_each_cell():
    fig = charts.clickable_cells(charts.confusion_heatmap([[3, 1], [2, 0]], ["cat", "dog"]), [[3, 1], [2, 0]],
                                 ["cat", "dog"])
    markers = fig.data[-1]
    assert list(zip(markers.y, markers.x)) == [("cat", "cat"), ("cat", "dog"), ("dog", "cat"), ("dog", "dog")]
    assert list(markers.customdata) == [3, 1, 2, 0] and markers.marker.opacity == 0
    # the axes end at the cells' edges (autorange padded them for the markers), the first class on top
    assert list(fig.layout.xaxis.range) == [-0.5, 1.5] and list(fig.layout.yaxis.range) == [1.5, -0.5]
    assert fig.layout.xaxis.type == fig.layout.yaxis.type == "category"  # classes named "1", "2" stay names


def test_the_evaluate_pages_confusion_chart_fits_a_phone_and_is_clickable():
    fig = charts.confusion_chart([[3, 1], [2, 0]], ["cat", "<b>dog"], normalize=True)
    heatmap, markers = fig.data
    np.testing.assert_allclose(heatmap.z, [[0.75, 0.25], [1.0, 0.0]])
    assert heatmap.textfont.size == 9 and heatmap.hoverinfo == "skip"
    assert list(markers.x) == ["cat", "&lt;b&gt;dog", "cat", "&lt;b&gt;dog"]  # escaped, as clickable_cells does
    assert list(markers.customdata) == [3, 1, 2, 0]
    bar = fig.layout.coloraxis.colorbar
    assert (bar.orientation, bar.y, bar.yanchor, bar.thickness, bar.title.side) == ("h", 1.0, "bottom", 10, "top")
    assert (fig.layout.margin.t, fig.layout.margin.b, fig.layout.margin.l, fig.layout.margin.r) == (60, 10, 10, 10)
    # cells fill the width: square cells left a narrow matrix in a tall band of white on a phone
    assert fig.layout.yaxis.scaleanchor is None and fig.layout.xaxis.constrain is None
    assert (fig.layout.xaxis.dtick, fig.layout.xaxis.tickfont.size) == (1, 10)
    assert (fig.layout.yaxis.dtick, fig.layout.yaxis.tickfont.size) == (1, 10)


def test_top_k_bar_largest_on_top():
    bar = charts.top_k_bar([{"label": "cat", "probability": 0.7}, {"label": "dog", "probability": 0.2}]).data[0]
    assert list(bar.y) == ["dog", "cat"] and list(bar.x) == [0.2, 0.7] and list(bar.text) == ["20.0%", "70.0%"]


def test_per_class_bars_three_metrics_per_class():
    fig = charts.per_class_bars([{"class": "cat", "precision": 0.5, "recall": 0.25, "f1": 1 / 3, "support": 4}])
    values = {t.name: list(t.y) for t in fig.data}
    assert values["precision"] == [0.5] and values["recall"] == [0.25]
    assert math.isclose(values["f1"][0], 1 / 3)
    assert fig.layout.legend.orientation == "h"  # above the bars: beside them it took a third of a phone's width
    assert fig.layout.yaxis.tickformat == ".0%" and fig.layout.yaxis.hoverformat == ".1%"  # fractions, shown in %
