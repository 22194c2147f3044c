"""Detection metrics of out-of-distribution scores, as Ren et al. 2019 tabulate them (AUROC,
AUPRC, FPR at 80% TPR), in numpy: out-of-distribution images are the positives, and a higher
score means more out-of-distribution. AUROC and AUPRC are scikit-learn's `roc_auc_score` and
`average_precision_score` of the same labels and scores."""
import numpy as np


def roc_points(inliers, outliers):
    """(false positive rates, true positive rates, thresholds) at each distinct score, from the
    highest down, starting at (0, 0): outliers are positive, a score >= threshold flags."""
    scores = np.concatenate([np.asarray(outliers, np.float64), np.asarray(inliers, np.float64)])
    positive = np.concatenate([np.ones(len(outliers)), np.zeros(len(inliers))])
    order = np.argsort(-scores, kind="mergesort")
    scores, positive = scores[order], positive[order]
    last = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]  # end of each tie group
    tp, fp = np.cumsum(positive)[last], np.cumsum(1 - positive)[last]
    return (np.r_[0.0, fp / max(len(inliers), 1)], np.r_[0.0, tp / max(len(outliers), 1)],
            np.r_[np.inf, scores[last]])


def auroc(inliers, outliers):
    """Area under the ROC curve (trapezoids: ties count one half)."""
    fpr, tpr, _ = roc_points(inliers, outliers)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def auprc(inliers, outliers):
    """Average precision: sum over thresholds of (recall step) x precision."""
    fpr, tpr, _ = roc_points(inliers, outliers)
    tp, fp = tpr * len(outliers), fpr * len(inliers)
    precision = np.divide(tp, tp + fp, out=np.ones_like(tp), where=(tp + fp) > 0)
    return float(np.sum(np.diff(tpr) * precision[1:]))


def fpr_at_tpr(inliers, outliers, tpr_level=0.8):
    """The lowest false positive rate at which at least `tpr_level` of the outliers are flagged."""
    fpr, tpr, _ = roc_points(inliers, outliers)
    return float(fpr[np.argmax(tpr >= tpr_level)])


def detection_metrics(inliers, outliers):
    """{"auroc", "auprc", "fpr_at_80_tpr"} of one score."""
    return {"auroc": auroc(inliers, outliers), "auprc": auprc(inliers, outliers),
            "fpr_at_80_tpr": fpr_at_tpr(inliers, outliers, 0.8)}
