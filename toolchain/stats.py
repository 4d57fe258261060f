"""The statistics a validation row carries: Wilson 95 % intervals for accuracy and
top-1 agreement, and McNemar's exact test of an artifact against its fp32 reference on
the same images, one-sided (scipy's binomial test: among the images where exactly one
of the two is right, is "the artifact is the one that is wrong" more common than chance?);
and how far a tensor is from its reference (SQNR, cosine, max error), for explain and repair."""
from __future__ import annotations

import numpy as np
from scipy.stats import binomtest

CONFIDENCE = 0.95
EXACT_DB = 99.0  # an SQNR where the error is zero


def wilson(successes: int, n: int) -> list[float] | None:
    """The Wilson score interval for successes out of n, as [low, high] fractions."""
    if n <= 0:
        return None
    ci = binomtest(int(successes), int(n)).proportion_ci(confidence_level=CONFIDENCE, method="wilson")
    return [float(ci.low), float(ci.high)]


def mcnemar_p(gained: int, lost: int) -> float:
    """Exact one-sided McNemar p-value that the artifact is worse: `lost` or more of the
    gained + lost discordant images going against it by chance alone."""
    total = gained + lost
    return 1.0 if total == 0 else float(binomtest(lost, total, 0.5, alternative="greater").pvalue)


def annotate(row: dict) -> None:
    """Intervals for the row's accuracy and agreement, and the paired test of its drop."""
    n = row.get("samples")
    if row.get("accuracy") is None or not n:
        return
    row["accuracy_ci"] = wilson(round(row["accuracy"] * n), n)
    if row.get("agreement") is not None:
        row["agreement_ci"] = wilson(round(row["agreement"] * n), n)
    paired = row.get("paired")
    if paired:
        row["drop_p_value"] = mcnemar_p(paired["gained"], paired["lost"])


def compare(reference: np.ndarray, got: np.ndarray) -> dict:
    """How far `got` is from `reference`: SQNR in dB (EXACT_DB where they are equal),
    cosine similarity and the largest absolute error."""
    ref, err = reference.astype(np.float64).ravel(), (got.astype(np.float64) - reference).ravel()
    noise = float(err @ err)
    if not np.isfinite(noise):  # NaN or inf in the artifact's tensor: as bad as it gets
        sqnr = -EXACT_DB
    else:
        sqnr = EXACT_DB if noise == 0 else min(EXACT_DB, 10 * np.log10(max(float(ref @ ref), 1e-30) / noise))
    denom = float(np.linalg.norm(ref) * np.linalg.norm(got))
    return {"sqnr_db": round(float(sqnr), 2),
            "cosine": round(float(ref @ got.astype(np.float64).ravel()) / denom, 5) if denom else None,
            "max_abs_error": float(np.abs(err).max())}
