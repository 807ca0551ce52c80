"""Binary classification metrics for the fracture classifier (scikit-learn)."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, roc_auc_score


def classification_report(labels, probs, threshold: float = 0.5) -> dict:
    """AUC (None when only one class is present), balanced accuracy and the confusion matrix
    ``[[TN, FP], [FN, TP]]`` at ``threshold`` on P(fractured)."""
    y = np.asarray(labels, dtype=int)
    p = np.asarray(probs, dtype=float)
    pred = (p >= threshold).astype(int)
    auc = float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else None
    return {"n": int(len(y)), "n_fractured": int(y.sum()), "auc": auc,
            "balanced_accuracy": float(balanced_accuracy_score(y, pred)) if len(y) else 0.0,
            "confusion_matrix": confusion_matrix(y, pred, labels=[0, 1]).tolist(),
            "threshold": threshold}
