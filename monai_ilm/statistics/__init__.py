"""Statistics shared by the evaluation and the results: bootstrap intervals and the checks of their array inputs.

A leaf of the package (numpy, SciPy and :mod:`monai_ilm.utils`): the test-set intervals of one run
(:func:`~monai_ilm.statistics.intervals.bootstrap_ci`) and the seed summaries of the results tables
(:mod:`monai_ilm.results.seeds`) use the same interval methods, so they live below both.
"""

from __future__ import annotations

from monai_ilm.utils import lazy_package

# each name is loaded from its module on first use: importing one module of the package loads only what it needs
__all__ = lazy_package(
    __name__,
    {
        "arrays": ("as_binary_labels", "as_matrix", "check_same_rows", "to_numpy"),
        "intervals": (
            "METHODS",
            "PAPER_Z",
            "BootstrapCI",
            "bootstrap_ci",
            "percentile_interval",
            "resample_indices",
            "seed_mean_standard_error_interval",
            "standard_error_interval",
        ),
    },
)
