"""The tidy long-form results table: schema, crash-safe per-run storage and regeneration of the paper's tables."""

from __future__ import annotations

from monai_ilm.results.rows import config_hash, make_row, utc_now
from monai_ilm.results.schema import COLUMNS, PROTOCOLS, SCHEMA, Column, empty_frame, validate
from monai_ilm.results.store import (
    ResultsFileWarning,
    has_cell,
    query,
    read_results,
    read_run,
    results_path,
    write_results,
)
from monai_ilm.results.tables import (
    PaperTable,
    feature_reuse_table,
    finetune_table,
    format_cell,
    linear_evaluation_table,
    paper_tables,
    probing_table,
)

__all__ = [
    "COLUMNS",
    "PROTOCOLS",
    "SCHEMA",
    "Column",
    "empty_frame",
    "validate",
    "config_hash",
    "make_row",
    "utc_now",
    "ResultsFileWarning",
    "has_cell",
    "query",
    "read_results",
    "read_run",
    "results_path",
    "write_results",
    "PaperTable",
    "feature_reuse_table",
    "finetune_table",
    "format_cell",
    "linear_evaluation_table",
    "paper_tables",
    "probing_table",
]
