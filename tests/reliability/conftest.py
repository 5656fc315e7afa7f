"""Shared fixtures of the reliability tests."""

from __future__ import annotations

import pytest
import torch
from monai.utils import set_determinism


@pytest.fixture(autouse=True)
def _restore_global_state():
    """Seed like a bundle, on one thread (the CPUs are shared: more threads are 10x slower); then undo both."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    set_determinism(seed=None)
    torch.set_num_threads(threads)
