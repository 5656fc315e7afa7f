"""Small builders shared by the tests: tiny MoCo networks, two-view batches and a log collector."""

from __future__ import annotations

import logging

import torch

from monai_ilm.networks import MoCo, resnet_encoder


def tiny_moco(queue_size: int = 32, seed: int = 0, **kwargs) -> MoCo:
    torch.manual_seed(seed)
    return MoCo(resnet_encoder("resnet18"), embedding_dim=16, queue_size=queue_size, **kwargs)


def pattern_batches(num_batches: int = 2, batch_size: int = 8, size: int = 32, seed: int = 0) -> list[dict]:
    """Fixed two-view batches: each image is a smooth random pattern; its two views differ by noise and a flip."""
    g = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(num_batches):
        base = torch.nn.functional.interpolate(torch.rand(batch_size, 3, 4, 4, generator=g), size=size, mode="bilinear")
        view1 = base + 0.05 * torch.randn(base.shape, generator=g)
        view2 = base.flip(-1) + 0.05 * torch.randn(base.shape, generator=g)
        batches.append({"view1": view1, "view2": view2})
    return batches


class CollectLogs(logging.Handler):
    """Keeps the messages of INFO records and above (attach it to the logger itself: some loggers do not propagate)."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def error_chain(error: BaseException) -> str:
    """The messages of ``error`` and of every exception it was raised from or during, one per line."""
    messages = []
    while error is not None:
        messages.append(str(error))
        error = error.__cause__ or error.__context__
    return "\n".join(messages)


def serve_until_healthy(command: list[str], cwd, env: dict, log, url: str, timeout: float = 60.0):
    """Start a Streamlit server, yield ``url`` once ``/_stcore/health`` answers, stop it afterwards (a generator).

    Fails the test with the server's log when it exits or does not answer within ``timeout`` seconds.
    """
    import subprocess
    import time
    import urllib.request

    import pytest

    def answers() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    with open(log, "wb") as out:
        proc = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + timeout
        while not answers():
            if proc.poll() is not None:
                pytest.fail(f"the dashboard exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
            if time.monotonic() > deadline:
                pytest.fail(f"the dashboard did not answer in {timeout} s:\n{log.read_text(errors='replace')}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
