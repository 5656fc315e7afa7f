"""Streamlit results dashboard of monai-ilm.

Run it with ``streamlit run dashboard/app.py -- --results <dir>``. The Streamlit-free logic lives in small
modules that the tests import directly:

- :mod:`dashboard.config`: which results directory and training-log folders to read;
- :mod:`dashboard.data`: loading, checking, filtering and seed-aggregating the results table;
- :mod:`dashboard.overview`: the paper's four tables with best cells, differences to MoCo and published numbers;
- :mod:`dashboard.cka`: the naming convention of CKA rows (the one place it is defined) and the heatmap matrices;
- :mod:`dashboard.logs`: training curves from TensorBoard event files or ``metrics.csv``;
- :mod:`dashboard.runs`: the run browser (JSON sidecars);
- :mod:`dashboard.paper`: the published numbers (``paper_results.json``) as results rows;
- :mod:`dashboard.figures`: the Plotly figures;
- :mod:`dashboard.sample`: a generator of realistic sample results for previews, tests and screenshots.

The dashboard only reads: CSV and JSON files of the results directory and TensorBoard event files; it never
imports, evaluates or unpickles anything from disk.
"""
