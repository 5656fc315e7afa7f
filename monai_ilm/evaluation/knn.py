"""Weighted k-nearest-neighbour score of features against a labelled bank (the online kNN check of pretraining).

solo-learn and lightly follow self-supervised pretraining with a kNN accuracy computed as a metric: the
features of a labelled bank and of a query set are accumulated, and the score is computed from them at the
end. :class:`WeightedKNNScore` is that metric for monai-ilm's data sets: the queries are classified by the
weighted vote of :func:`weighted_knn_scores` and scored with the data set's test metric
(:mod:`monai_ilm.evaluation.metrics`). :class:`~monai_ilm.handlers.OnlineKNNHandler` runs it during pretraining.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from monai_ilm.evaluation.metrics import binary_auc, f1, mean_auc

__all__ = ["KNN_METRICS", "UndefinedScoreError", "WeightedKNNScore", "weighted_knn_scores"]

KNN_METRICS = ("auc", "f1")
"""``"auc"``: mean ROC-AUC over findings (multi-label) or ROC-AUC of class 1 (binary); ``"f1"``: macro F1."""


class UndefinedScoreError(ValueError):
    """The test metric is undefined for these query labels (e.g. a single class in the sample)."""


def weighted_knn_scores(
    bank: torch.Tensor, bank_labels: torch.Tensor, queries: torch.Tensor, k: int = 20, temperature: float = 0.07
) -> torch.Tensor:
    """Class scores of a weighted kNN vote (Wu et al., CVPR 2018, InstDisc; as solo-learn's online kNN).

    Features are L2-normalised; each query's ``k`` most cosine-similar bank rows vote with weight
    ``exp(similarity / temperature)``. The scores are the weighted votes per class normalised by the
    total weight, i.e. scikit-learn's ``KNeighborsClassifier(metric="cosine").predict_proba`` with
    ``weights=lambda d: exp((1 - d) / temperature)``. For multi-label (multi-hot) labels each finding
    is voted on separately: its score is the weighted share of neighbours that have it.

    Args:
        bank: ``(n_bank, d)`` features of the labelled bank.
        bank_labels: ``(n_bank,)`` integer classes, or ``(n_bank, n_findings)`` multi-hot labels.
        queries: ``(n, d)`` features to score.
        k: neighbours (capped at ``n_bank``).
        temperature: of the exponential weights.

    Returns:
        ``(n, n_classes)`` float32 scores in [0, 1]; each row sums to 1 for integer classes.

    Raises:
        ValueError: when the shapes do not match.
    """
    if bank.ndim != 2 or queries.ndim != 2 or bank.shape[1] != queries.shape[1] or len(bank_labels) != len(bank):
        raise ValueError(
            f"bank, bank_labels, queries: expected (n_bank, d), (n_bank, ...) and (n, d), got {tuple(bank.shape)}, "
            f"{tuple(bank_labels.shape)} and {tuple(queries.shape)}."
        )
    bank = F.normalize(bank.float(), dim=1)
    queries = F.normalize(queries.float().to(bank.device), dim=1)
    similarity, index = (queries @ bank.t()).topk(min(k, len(bank)), dim=1)
    # subtracting each row's largest similarity before exp leaves the normalised scores unchanged and cannot overflow
    weights = torch.exp((similarity - similarity[:, :1]) / temperature)
    labels = bank_labels.to(bank.device)
    votes = labels.float() if labels.ndim == 2 else F.one_hot(labels.long(), int(labels.max()) + 1).float()
    if labels.ndim == 1:
        votes = F.pad(votes, (0, max(0, 2 - votes.shape[1])))  # binary tasks keep two columns
    scores = torch.einsum("nk,nkc->nc", weights, votes[index])
    return scores / weights.sum(dim=1, keepdim=True)


class WeightedKNNScore:
    """The test metric of a weighted kNN classifier of query features against a labelled bank.

    Feed it batches with :meth:`update` (bank rows, query rows or both), then :meth:`compute` classifies every
    query by :func:`weighted_knn_scores` over the whole bank and scores the result: ``metric="auc"`` is the mean
    ROC-AUC over the findings present among the queries for multi-hot labels
    (:func:`~monai_ilm.evaluation.metrics.mean_auc`) and the ROC-AUC of class 1 for integer labels
    (:func:`~monai_ilm.evaluation.metrics.binary_auc`); ``"f1"`` is the macro F1 of the argmax
    (:func:`~monai_ilm.evaluation.metrics.f1`). Batches may live on any device; they are concatenated in the
    order given, so the score does not depend on how the sets were split into batches.

    Args:
        metric: ``"auc"`` or ``"f1"``.
        k: neighbours (capped at the bank size).
        temperature: of the vote weights ``exp(similarity / temperature)``.

    Raises:
        ValueError: for an unknown metric, a ``k`` below 1 or a temperature that is not positive.
    """

    def __init__(self, metric: str = "auc", k: int = 20, temperature: float = 0.07) -> None:
        if metric not in KNN_METRICS:
            raise ValueError(f"metric: expected one of {list(KNN_METRICS)}, got {metric!r}.")
        if k < 1:
            raise ValueError(f"k: expected a positive integer, got {k!r}.")
        if not temperature > 0:
            raise ValueError(f"temperature: expected a positive number, got {temperature!r}.")
        self.metric, self.k, self.temperature = metric, k, temperature
        self.reset()

    def reset(self) -> None:
        """Forget every bank and query row."""
        self._parts: dict[str, list[torch.Tensor]] = {"bank": [], "bank_labels": [], "queries": [], "labels": []}

    def update(
        self,
        bank: torch.Tensor | None = None,
        bank_labels: torch.Tensor | None = None,
        queries: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> None:
        """Add ``(n, d)`` bank features with their labels and/or ``(n, d)`` query features with theirs.

        Labels are ``(n,)`` integer classes or ``(n, n_findings)`` multi-hot rows.

        Raises:
            ValueError: when features come without their labels, or labels without features.
        """
        self._add("bank", "bank_labels", bank, bank_labels)
        self._add("queries", "labels", queries, labels)

    def _add(
        self, feature_key: str, label_key: str, features: torch.Tensor | None, labels: torch.Tensor | None
    ) -> None:
        if (features is None) != (labels is None):
            raise ValueError(
                f"{feature_key}, {label_key}: expected features and labels together, got only one of them."
            )
        if features is not None:
            self._parts[feature_key].append(features.detach())
            self._parts[label_key].append(torch.as_tensor(labels))

    def compute(self) -> float:
        """The metric of the kNN scores of every query so far.

        Raises:
            ValueError: with no bank or no query rows, or for shapes that do not match
                (see :func:`weighted_knn_scores`).
            UndefinedScoreError: (a ``ValueError``) when the metric is undefined for these labels (one class only).
        """
        empty = [name for name in ("bank", "queries") if not self._parts[name]]
        if empty:
            raise ValueError(f"{', '.join(empty)}: expected at least one batch from update(), got none.")
        bank, queries = torch.cat(self._parts["bank"]), torch.cat(self._parts["queries"])
        bank_labels = torch.cat([t.to(bank.device) for t in self._parts["bank_labels"]])
        labels = torch.cat([t.to(bank.device) for t in self._parts["labels"]]).cpu().numpy()
        scores = weighted_knn_scores(bank, bank_labels, queries, self.k, self.temperature).cpu().numpy()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # findings absent from the queries are skipped by design
                if self.metric == "f1":
                    return f1(labels, scores, average="macro")
                if labels.ndim == 2:
                    return mean_auc(labels, scores).mean
                return binary_auc(labels, scores[:, :2])
        except ValueError as error:
            raise UndefinedScoreError(str(error)) from error
