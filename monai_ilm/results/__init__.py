"""The tidy long-form results table: schema, crash-safe per-run storage and regeneration of the paper's tables."""

from __future__ import annotations

from monai_ilm.results.differences import differences_table
from monai_ilm.results.paper_table import PaperTable, format_cell
from monai_ilm.results.rows import (
    config_hash,
    is_per_class_metric,
    make_row,
    parse_seeds,
    per_class_metric,
    seeds_text,
    utc_now,
)
from monai_ilm.results.schema import (
    COLUMNS,
    PERFORMANCE_PROTOCOLS,
    PROTOCOLS,
    ROW_KINDS,
    SCHEMA,
    Column,
    empty_frame,
    validate,
)
from monai_ilm.results.store import (
    ResultsFileWarning,
    has_cell,
    query,
    read_replicates,
    read_results,
    read_run,
    replicate_key,
    replicates_path,
    results_path,
    write_json_atomic,
    write_results,
)
from monai_ilm.results.tables import (
    feature_reuse_table,
    finetune_table,
    linear_evaluation_table,
    paper_tables,
    probing_table,
)

__all__ = [
    "COLUMNS",
    "PERFORMANCE_PROTOCOLS",
    "PROTOCOLS",
    "ROW_KINDS",
    "SCHEMA",
    "Column",
    "empty_frame",
    "validate",
    "config_hash",
    "make_row",
    "per_class_metric",
    "parse_seeds",
    "seeds_text",
    "is_per_class_metric",
    "utc_now",
    "ResultsFileWarning",
    "has_cell",
    "query",
    "read_replicates",
    "replicate_key",
    "replicates_path",
    "read_results",
    "read_run",
    "results_path",
    "write_json_atomic",
    "write_results",
    "PaperTable",
    "differences_table",
    "feature_reuse_table",
    "finetune_table",
    "format_cell",
    "linear_evaluation_table",
    "paper_tables",
    "probing_table",
]
