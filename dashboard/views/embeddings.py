"""Embedding explorer: a 2-D PCA or t-SNE of stored embeddings; selecting points shows their images."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import embeddings, state, ui
from dashboard.figures import chart_config, embedding_figure
from dashboard.labels import method_label

_COLOR_BY = {"label": "label", "split": "split", "method": "method", "file": "file"}
_MAX_THUMBNAILS = 24


def _selected_points(event, fig) -> list[int]:
    """The ``point`` numbers of the points chosen with the box or lasso tool."""
    chosen = []
    for p in getattr(getattr(event, "selection", None), "points", None) or []:
        curve, index = p.get("curve_number"), p.get("point_index")
        if curve is None or index is None or curve >= len(fig.data):
            continue
        chosen.append(int(fig.data[curve].customdata[index]))
    return chosen


def _images(points: pd.DataFrame) -> None:
    st.markdown(
        f"**{len(points)} selected point(s)**"
        + (f", the first {_MAX_THUMBNAILS} shown" if len(points) > _MAX_THUMBNAILS else "")
    )
    missing = []
    shown = points.head(_MAX_THUMBNAILS)
    cols = st.columns(6)
    k = 0
    for row in shown.itertuples():
        picture = getattr(row, "picture", None)
        image = embeddings.picture_image(picture) if picture is not None else embeddings.thumbnail(row.image_path)
        if image is None:
            missing.append(row.image_path)
            continue
        cols[k % len(cols)].image(image, caption=f"{row.label}", width="stretch")
        k += 1
    if missing:
        st.caption(
            f"{len(missing)} image(s) not shown: the stored path is not a readable image file here (moved, on "
            f"another machine, or an identifier rather than a path), e.g. `{missing[0]}`."
        )
    st.dataframe(
        points[["id", "label", "split", "method", "file"]].rename(
            columns={"id": "Sample", "label": "Label", "split": "Split", "method": "Method", "file": "File"}
        ),
        hide_index=True,
        width="stretch",
    )


def render() -> None:
    """Draw the page."""
    ctx = state.context()
    st.title("Embedding explorer")
    st.caption(
        "Pooled features of the test images, projected to two dimensions (PCA, or t-SNE for up to "
        f"{embeddings.TSNE_MAX_POINTS:,} points). Select points with the box or lasso tool to see their images. "
        "Written by the layer-wise probing cells (`<run_id>.embeddings.npz`, block 4) and by a bundle's "
        "`inference.json` (`embeddings_<split>.npz`)."
    )
    ui.show_problems(list(ctx.loaded.problems), str(ctx.paths.results_dir))
    files = state.embedding_files(str(ctx.paths.results_dir))
    if not files:
        st.info(
            f"No embeddings next to `{ctx.paths.results_dir}`: no `*.embeddings.npz` there and no "
            "`embeddings_*.npz` below its parent. The probing cells of the experiment write them."
        )
        return
    root = str(ctx.paths.results_dir.parent)
    names = {f[0]: f for f in files}
    _, all_problems = state.embedding_set(files, root)
    ui.show_problems(all_problems, root, "embeddings file")
    bad = {p.file for p in all_problems}
    good = [f for f in files if embeddings.display_name(f[0], root) not in bad]
    if not good:
        st.warning("None of the embedding files could be read (see above).")
        return
    c1, c2, c3 = st.columns([3, 1, 1])
    chosen = c1.multiselect(
        "Embedding files",
        [f[0] for f in good],
        default=[good[0][0]],
        format_func=lambda p: embeddings.display_name(p, root),
        key="emb_files",
    )
    if not chosen:
        st.info("Choose at least one embeddings file.")
        return
    selection = tuple(names[p] for p in chosen)
    points, _ = state.embedding_set(selection, root)
    projections = [p for p in embeddings.PROJECTIONS if p == "PCA" or len(points.points) <= embeddings.TSNE_MAX_POINTS]
    method = c2.radio("Projection", projections, key="emb_projection", horizontal=True)
    color_by = c3.selectbox("Colour by", list(_COLOR_BY), key="emb_color")
    if len(chosen) > 1:
        st.caption(
            "Several files share one projection: each encoder has its own feature space, so the joint plot shows "
            "how the clouds differ, not matching directions."
        )
    try:
        xy, titles = state.projection(selection, root, method)
    except ValueError as err:
        st.warning(f"Cannot project these embeddings: {err}")
        return
    frame = points.points.assign(x=xy[:, 0], y=xy[:, 1])
    title = f"{method} of {len(frame):,} embeddings" + (
        f" ({', '.join(sorted({method_label(m) for m in frame['method']}))})" if color_by != "method" else ""
    )
    fig = embedding_figure(frame, _COLOR_BY[color_by], title, titles)
    config = chart_config("embeddings") | {"modeBarButtonsToRemove": []}
    event = st.plotly_chart(
        fig, config=config, key="emb_chart", on_select="rerun", selection_mode=("points", "box", "lasso")
    )
    picked = _selected_points(event, fig)
    manual = st.multiselect(
        "Or pick samples", frame["id"].tolist(), key="emb_pick", placeholder="sample identifiers (image paths)"
    )
    if manual:
        picked += frame.loc[frame["id"].isin(manual), "point"].tolist()
    if picked:
        _images(frame[frame["point"].isin(list(dict.fromkeys(picked)))])
    else:
        st.caption("No points selected.")
    ui.csv_download(frame.drop(columns="point"), "embedding_projection", "Download the 2-D projection (CSV)", key="emb")


ui.run_page(render)
