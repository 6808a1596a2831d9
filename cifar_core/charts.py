"""Plotly figures, each a pure function of numbers (no model, no files), so pages only place them."""

from __future__ import annotations

import html
import math

import numpy as np
import plotly.express as px
import plotly.graph_objects as go

RIGHT, WRONG = "#1a7f37", "#cf222e"


def escape(text) -> str:
    """User text (a run name, a class folder's name, a file name) as Plotly text: Plotly renders a subset of HTML in
    titles, legends, axis ticks, hover text and annotations (<a href>, <span style>), so <, > and & are escaped and
    show as themselves. Every figure here passes user text through this, and only here."""
    return html.escape(str(text), quote=False)


def plain(text):
    """A value Plotly sends back in a selection event (an escaped class name) as the user's text again."""
    return html.unescape(text) if isinstance(text, str) else text


def _position(record: dict) -> float:
    """Where a record lies in epochs: a batch point within its epoch, an epoch's at its end, and the last epoch of
    a run whose time budget ended within it at the step it reached (not as if it had trained it all)."""
    steps, step = record.get("steps_per_epoch"), record.get("step")
    if record.get("kind") == "batch":
        return record["epoch"] - 1 + step / max(1, steps or step)
    if steps and step and 0 < step < steps:
        return record["epoch"] - 1 + step / steps
    return record["epoch"]


def _series(records, kind, key):
    points = [(_position(r), r.get(key)) for r in records if r.get("kind") == kind]
    return [p[0] for p in points], [p[1] for p in points]


def _epoch_axis(fig: go.Figure) -> None:
    """An epoch axis from 0 to the last point, so that a figure with no point yet runs as far as its neighbour (a
    lone empty axis ran from -1 to 6), ticked at whole epochs from two on (Plotly ticked 1, 1.5, 2, ...)."""
    last = max((x for trace in fig.data for x in (trace.x or ()) if x is not None), default=0) or 1
    # whole epochs from two on, half epochs to two, and Plotly's own ticks within the first epoch
    dtick = math.ceil(last / 10) if last >= 2 else 0.5 if last >= 1 else None
    fig.update_xaxes(title_text="epoch", range=[0, last], dtick=dtick)
    fig.update_traces(cliponaxis=False)  # the last epoch's marker stands on the axis's end: drawn whole, not halved


def training_curve(records: list[dict], key: str, steps_per_epoch: int | None = None) -> go.Figure:
    """One metric, "loss" or "accuracy", against epochs: training per batch point (thin), validation per epoch
    (markers), in the same two colours in both figures. The Train page sets the two side by side in columns, which
    stack on a narrow screen: one figure of two panels had squeezed both into a phone's width. A null (NaN) value
    leaves a gap."""
    records = [{**r, "steps_per_epoch": steps_per_epoch} if steps_per_epoch else r for r in records]
    shown = "%{y:.1%}" if key == "accuracy" else "%{y:.4f}"  # accuracy in percent, as every page says it
    fig = go.Figure()
    x, y = _series(records, "batch", key)
    fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name="train", line={"width": 1, "color": "#1f77b4"},
                             hovertemplate=f"train {key} {shown}<extra></extra>", connectgaps=False))
    x, y = _series(records, "epoch", f"val_{key}")
    fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name="validation", line={"color": "#ff7f0e"},
                             hovertemplate=f"validation {key} {shown}<extra></extra>", connectgaps=False))
    _epoch_axis(fig)
    if key == "accuracy":
        fig.update_yaxes(range=[0, 1], tickformat=".0%")
    fig.update_layout(title=key, height=340, margin={"t": 40, "b": 30, "l": 40, "r": 10},
                      legend={"orientation": "h", "y": -0.25})
    return fig


RUN_COLOURS = px.colors.qualitative.D3


def overlay_curves(curves: dict[str, list[dict]], key: str = "val_accuracy") -> go.Figure:
    """One line per run of an epoch metric, for comparing runs."""
    fig = go.Figure()
    for name, records in curves.items():
        x, y = _series(records, "epoch", key)
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=escape(name), connectgaps=False))
    # The legend below the plot, not beside it: run names are long, and beside it they took most of a phone's width.
    _epoch_axis(fig)
    # D3's colours, as the Train page's curves: Streamlit's own palette starts with two blues, and two runs overlaid
    # were hard to tell apart
    fig.update_layout(yaxis_title=key.replace("_", " ").replace("val ", "validation "), colorway=RUN_COLOURS,
                      height=420, margin={"t": 30, "b": 30, "l": 40, "r": 10}, legend={"orientation": "h", "y": -0.2})
    if key.endswith("accuracy"):
        fig.update_yaxes(tickformat=".1~%")  # a decimal where the runs lie close: ".0%" ticked 19%, 19%, 20%
    return fig


def confusion_heatmap(cm, class_names, normalize: bool = False) -> go.Figure:
    """Rows are true classes, columns predicted; normalized rows sum to 1. The cells fill the chart's width and
    height rather than staying square: square, a phone's narrow matrix stood in a band of white as tall as it."""
    cm = np.asarray(cm, dtype=float)
    values = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalize else cm
    names = [escape(n) for n in class_names]
    fig = px.imshow(values, x=names, y=names, color_continuous_scale="Blues",
                    text_auto=".0%" if normalize else "d", aspect="auto",  # percent, as the page's recall is
                    labels={"x": "predicted", "y": "true", "color": "of the true class" if normalize else "images"})
    fig.update_layout(height=560, margin={"t": 30, "b": 30, "l": 30, "r": 10})
    if normalize:
        fig.update_coloraxes(colorbar_tickformat=".0%")
    fig.update_xaxes(side="bottom", tickangle=-45)
    return fig


def top_k_bar(top: list[dict]) -> go.Figure:
    labels = [escape(t["label"]) for t in top][::-1]
    probabilities = [t["probability"] for t in top][::-1]
    fig = go.Figure(go.Bar(x=probabilities, y=labels, orientation="h", text=[f"{p:.1%}" for p in probabilities],
                           textposition="auto", marker_color="#1f77b4"))
    fig.update_layout(xaxis={"range": [0, 1], "tickformat": ".0%"}, height=60 + 28 * len(top),
                      margin={"t": 10, "b": 20, "l": 10, "r": 10})
    return fig


def per_class_bars(per_class: list[dict]) -> go.Figure:
    rows = [{"class": escape(r["class"]), "metric": m, "value": r[m]} for r in per_class
            for m in ("precision", "recall", "f1")]
    fig = px.bar(rows, x="class", y="value", color="metric", barmode="group", range_y=[0, 1])
    # The legend above the bars, not beside them, where it took a third of a phone's width.
    fig.update_layout(height=340, margin={"t": 40, "b": 30, "l": 40, "r": 10},
                      legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "title": None})
    fig.update_yaxes(title=None, tickformat=".0%", hoverformat=".1%")  # percent, as the page's accuracy is
    return fig


def enlarge(image: np.ndarray, scale: int = 4) -> np.ndarray:
    """Nearest-neighbour enlargement: each pixel becomes a scale x scale block, so nothing is smoothed away."""
    return np.repeat(np.repeat(np.asarray(image), scale, axis=0), scale, axis=1)


def tile(images, columns: int = 8, separator: int = 1, background: int = 255) -> np.ndarray:
    """Equal-sized uint8 images (N, h, w) or (N, h, w, 3) side by side, `columns` to a row, with `separator` pixels of
    `background` between them and around none; cells after the last image are left as background."""
    images = np.asarray(images, dtype=np.uint8)
    n, h, w = images.shape[:3]
    columns = max(1, min(columns, n))
    rows = -(-n // columns)
    grid = np.full((rows * h + (rows - 1) * separator, columns * w + (columns - 1) * separator, *images.shape[3:]),
                   background, np.uint8)
    for i, image in enumerate(images):
        top, left = (i // columns) * (h + separator), (i % columns) * (w + separator)
        grid[top:top + h, left:left + w] = image
    return grid


def _auto_scale(size: int, target: int) -> int:
    return max(1, round(target / max(1, size)))


def _ramp(stops: list[str], n: int = 256) -> np.ndarray:
    """(n, 3) uint8: the hex colour stops interpolated linearly."""
    rgb = np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in stops], dtype=np.float64)
    at = np.linspace(0, len(stops) - 1, n)
    return np.round(np.stack([np.interp(at, np.arange(len(stops)), rgb[:, k]) for k in range(3)], 1)).astype(np.uint8)


VIRIDIS = _ramp(px.colors.sequential.Viridis)  # dark purple (low) to yellow (high): never white, unlike the gaps


def feature_map_grid(maps, limit: int = 32, columns: int = 8, scale: int | None = None,
                     separator: int = 1) -> np.ndarray:
    """The first `limit` of a layer's maps (channels, H, W) as one RGB uint8 image: each map min-max scaled on its own
    to 0..255 (a constant map is all low) and coloured with VIRIDIS, enlarged nearest-neighbour `scale` times
    (default: to about 48 pixels), tiled `columns` to a row with white separators."""
    maps = np.asarray(maps, dtype=np.float32)[:limit]
    if not len(maps):
        raise ValueError("There are no feature maps to draw.")
    low = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - low
    scaled = np.divide(maps - low, span, out=np.zeros_like(maps), where=span > 0)
    tiles = VIRIDIS[np.round(scaled * 255).astype(np.uint8)]
    scale = scale or _auto_scale(maps.shape[1], 48)
    return tile(np.stack([enlarge(t, scale) for t in tiles]), columns, separator)


def filter_grid(filters, columns: int = 16, scale: int | None = None, separator: int | None = None) -> np.ndarray:
    """First-layer filters (N, k, k, 3) uint8 (explain.first_layer_filters) as one RGB image: each enlarged
    nearest-neighbour `scale` times (default: to about 32 pixels), tiled `columns` to a row with white separators a
    quarter of a filter's pixel wide (one pixel between 32-pixel tiles had run the filters together into a strip)."""
    filters = np.asarray(filters, dtype=np.uint8)
    if not len(filters):
        raise ValueError("There are no filters to draw.")
    scale = scale or _auto_scale(filters.shape[1], 32)
    return tile(np.stack([enlarge(f, scale) for f in filters]), columns, separator or max(1, scale // 4))


def clickable_cells(fig, confusion_matrix, class_names):
    """Plotly cannot select heatmap cells, so st.plotly_chart(on_select=...) never hears a click on one: an invisible
    marker at the centre of every cell makes a click select that cell (x = predicted class, y = true class). The
    markers carry the hover text; the heatmap's own is switched off so that only one label shows. The event's x and y
    are the escaped names (charts.plain gives the class names back)."""
    names = [escape(n) for n in class_names]
    fig.add_trace(go.Scatter(
        x=[pred for _ in names for pred in names], y=[true for true in names for _ in names],
        customdata=np.asarray(confusion_matrix).reshape(-1), mode="markers", showlegend=False,
        marker={"size": 30, "opacity": 0}, selected={"marker": {"opacity": 0}}, unselected={"marker": {"opacity": 0}},
        hovertemplate="true: %{y}<br>predicted: %{x}<br>images: %{customdata}<extra></extra>"))
    fig.update_traces(hoverinfo="skip", hovertemplate=None, selector={"type": "heatmap"})
    # the axes end at the cells' edges: for the 30-px markers Plotly's autorange had padded them, leaving the
    # matrix 21 px short of its plot area on every side, its gridlines sticking out and its labels adrift
    # category axes: class folders named "1" to "10" had made Plotly draw number axes, and the range cut one off
    fig.update_xaxes(type="category", range=[-0.5, len(names) - 0.5], autorange=False)
    fig.update_yaxes(type="category", range=[len(names) - 0.5, -0.5], autorange=False)
    return fig


def confusion_chart(cm, class_names, normalize: bool = False) -> go.Figure:
    """The Evaluate page's matrix: confusion_heatmap with clickable_cells, readable on a phone too (the colour bar
    above the matrix, not beside it; every class named; small type)."""
    fig = confusion_heatmap(cm, class_names, normalize)
    fig.update_layout(coloraxis_colorbar={"orientation": "h", "y": 1.0, "yanchor": "bottom", "thickness": 10,
                                          "title": {"side": "top"}}, margin={"t": 60, "b": 10, "l": 10, "r": 10})
    fig.update_xaxes(dtick=1, tickfont_size=10)
    fig.update_yaxes(dtick=1, tickfont_size=10)
    fig.update_traces(textfont_size=9, selector={"type": "heatmap"})
    return clickable_cells(fig, cm, class_names)


_NODE_COLOURS = {"Conv2D": "#cfe2ff", "Dense": "#d1e7dd", "MaxPooling2D": "#fff3cd", "AveragePooling2D": "#fff3cd",
                 "GlobalAveragePooling2D": "#fff3cd", "GlobalMaxPooling2D": "#fff3cd"}


def network_dot(rows, input_shape, per_row: int = 4, bad_index: int | None = None) -> str:
    """The layer stack as a Graphviz diagram (st.graphviz_chart): one node per layer with its output shape, wider
    for more channels and taller for a larger image, rows of `per_row` nodes so that a long stack stays compact;
    the layer at bad_index (or any row without a shape) in red."""
    def size(shape):
        if shape is None:
            return 0.8, 0.4
        channels = shape[-1]
        side = shape[0] if len(shape) == 3 else 1
        return 0.6 + 0.09 * np.log2(max(channels, 1)), 0.32 + 0.3 * min(side, 64) / 32

    def label(text):
        return text.replace("\\", "\\\\").replace('"', '\\"')

    nodes = [("in", "input", tuple(input_shape), "#eeeeee")]
    for r in rows:
        bad = r.output_shape is None or r.index == bad_index
        colour = "#f8d7da" if bad else _NODE_COLOURS.get(r.type.split(" ")[0], "#f2f2f2")
        nodes.append((f"n{r.index}", f"{r.index}. {r.type}", r.output_shape, colour))
    lines = ['digraph network {', 'graph [rankdir=TB, nodesep=0.15, ranksep=0.25, bgcolor="transparent"];',
             'node [shape=box, style="filled,rounded", fontname="Helvetica", fontsize=9, margin="0.04,0.02"];',
             'edge [arrowsize=0.5];']
    for node_id, text, shape, colour in nodes:
        width, height = size(shape)
        shown = " × ".join(map(str, shape)) if shape else "invalid"
        pen = ', color="#dc3545", penwidth=2, fontcolor="#842029"' if colour == "#f8d7da" else ""
        lines.append(f'{node_id} [label="{label(text)}\\n{shown}", width={width:.2f}, height={height:.2f}, '
                     f'fillcolor="{colour}"{pen}];')
    firsts = []
    for start in range(0, len(nodes), per_row):
        chunk = [n[0] for n in nodes[start:start + per_row]]
        lines.append("{rank=same; " + "; ".join(chunk) + ";}")
        firsts.append(chunk[0])
    # Rows read left to right, each under the one before (an invisible edge aligns their first boxes); the arrow
    # from a row's end to the next row's start does not move the boxes.
    lines += [f"{a} -> {b} [style=invis, weight=100];" for a, b in zip(firsts, firsts[1:])]
    lines += [f"{a[0]} -> {b[0]}" + (" [constraint=false];" if b[0] in firsts else ";")
              for a, b in zip(nodes, nodes[1:])]
    return "\n".join(lines + ["}"])
