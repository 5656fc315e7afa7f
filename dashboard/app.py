"""monai-ilm results dashboard.

Run::

    streamlit run dashboard/app.py -- --results <dir>

The results directory falls back to ``$MONAI_ILM_RESULTS``, then to the demo's ``demo_output/results``
(see :mod:`dashboard.config`). The app only reads that directory (CSV and JSON) and the training logs next to it.
"""

from __future__ import annotations

import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent
if str(_REPO) not in sys.path:  # `streamlit run dashboard/app.py` puts dashboard/ itself on the path, not the repo
    sys.path.insert(0, str(_REPO))

import streamlit as st  # noqa: E402 - after the path set-up above

from dashboard import state  # noqa: E402
from dashboard.config import from_process  # noqa: E402
from dashboard.data import Filters  # noqa: E402
from dashboard.labels import PROTOCOL_LABELS, dataset_label, method_label  # noqa: E402

# (script, title, icon, url); no icons: Streamlit's material icons load a font from an online host
PAGES = (
    ("views/overview.py", "Results overview", None, "overview"),
    ("views/label_efficiency.py", "Label efficiency", None, "label-efficiency"),
    ("views/probing.py", "Layer-wise probing", None, "probing"),
    ("views/feature_reuse.py", "CKA feature reuse", None, "feature-reuse"),
    ("views/findings.py", "KS distance and findings", None, "findings"),
    ("views/embeddings.py", "Embedding explorer", None, "embeddings"),
    ("views/training.py", "Training curves", None, "training"),
    ("views/runs.py", "Run browser", None, "runs"),
)
_LABELS = {
    "datasets": ("Datasets", dataset_label),
    "methods": ("Methods", method_label),
    "seeds": ("Seeds", str),
    "protocols": ("Protocols", lambda p: PROTOCOL_LABELS.get(p, p)),
}


def _multiselect(name: str, options: list) -> tuple:
    """A sidebar multiselect that keeps the user's choice across reruns, selects options that newly
    appear (a run was added) and drops options that disappeared."""
    key, known_key = f"filter_{name}", f"filter_{name}_known"
    known = st.session_state.get(known_key)
    if key not in st.session_state or known is None:
        st.session_state[key] = list(options)
    else:
        current = [v for v in st.session_state[key] if v in options]
        st.session_state[key] = current + [v for v in options if v not in known and v not in current]
    st.session_state[known_key] = list(options)
    label, fmt = _LABELS[name]
    return tuple(st.sidebar.multiselect(label, options, key=key, format_func=fmt))


def _filters(options: dict) -> Filters:
    st.sidebar.header("Filters")
    if not any(options.values()):
        st.sidebar.caption("No results to filter yet.")
        return Filters((), (), (), ())
    return Filters(*(_multiselect(name, options[name]) for name in ("datasets", "methods", "seeds", "protocols")))


def _sidebar_source(ctx: state.Context) -> None:
    st.sidebar.divider()
    st.sidebar.caption(f"Results: `{ctx.paths.results_dir}` (from {ctx.paths.source})")
    n_runs = ctx.loaded.frame["run_id"].nunique()
    st.sidebar.caption(
        f"{len(ctx.loaded.frame):,} rows · {n_runs} runs · {len(ctx.selected):,} rows selected"
        + (f" · {len(ctx.loaded.problems)} file(s) skipped" if ctx.loaded.problems else "")
    )
    if st.sidebar.button("Reload results"):  # no material icon: its font is fetched from an online host
        st.rerun()


def main() -> None:
    """Configure the page, build the shared context and run the selected page."""
    st.set_page_config(page_title="monai-ilm results", layout="wide")  # no page_icon: a material icon is fetched online
    pages = [
        st.Page(path, title=title, icon=icon, url_path=url, default=(i == 0))
        for i, (path, title, icon, url) in enumerate(PAGES)
    ]
    navigation = st.navigation(pages)
    ctx = state.build_context(from_process(), _filters)
    _sidebar_source(ctx)
    state.set_context(ctx)
    navigation.run()


main()
