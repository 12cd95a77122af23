"""Numeric comparison of one step's outputs with a reference, output by output."""

from __future__ import annotations

import numpy as np

from exportq.report import Comparison
from exportq.spec import Tolerance

# Relative error is measured against the reference's scale; this floor keeps an all-zero
# reference from turning a tiny absolute error into an infinite relative one.
SCALE_FLOOR = 1e-6


def compare_outputs(
    reference: dict[str, np.ndarray],
    candidate: dict[str, np.ndarray],
    tolerance: Tolerance,
    *,
    input_set: str,
    against: str,
) -> list[Comparison]:
    rows = []
    for name, ref in reference.items():
        got = candidate.get(name)
        rows.append(_compare_one(name, ref, got, tolerance, input_set, against))
    return rows


def _compare_one(
    name: str,
    ref: np.ndarray,
    got: np.ndarray | None,
    tol: Tolerance,
    input_set: str,
    against: str,
) -> Comparison:
    ref_shape = list(ref.shape)
    if got is None or got.size != ref.size or _squeezed(got.shape) != _squeezed(ref.shape):
        return Comparison(
            output=name,
            input_set=input_set,
            against=against,
            ref_shape=ref_shape,
            shape=[] if got is None else list(got.shape),
            max_abs=float("inf"),
            max_rel=float("inf"),
            cosine=0.0,
            passed=False,
        )
    a = ref.astype(np.float64).reshape(-1)
    b = got.astype(np.float64).reshape(-1)
    finite = np.isfinite(a) & np.isfinite(b)
    same_nonfinite = bool(np.all((~np.isfinite(a) & (a == b)) | finite))
    diff = np.abs(a[finite] - b[finite])
    max_abs = float(diff.max()) if diff.size else 0.0
    scale = max(float(np.abs(a[finite]).max()) if diff.size else 0.0, SCALE_FLOOR)
    max_rel = max_abs / scale
    cosine = _cosine(a[finite], b[finite])
    passed = (
        same_nonfinite
        and max_rel <= tol.max_rel
        and cosine >= tol.min_cosine
        and (tol.max_abs is None or max_abs <= tol.max_abs)
    )
    return Comparison(
        output=name,
        input_set=input_set,
        against=against,
        ref_shape=ref_shape,
        shape=list(got.shape),
        max_abs=max_abs,
        max_rel=max_rel,
        cosine=cosine,
        passed=passed,
    )


def _squeezed(shape: tuple[int, ...]) -> tuple[int, ...]:
    # ncnn has no batch axis: a [1, C, H, W] reference comes back as [C, H, W].
    return tuple(d for d in shape if d != 1)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 and nb == 0.0:
        return 1.0
    if na == 0.0 or nb == 0.0:
        return 0.0
    return float(np.dot(a, b) / (na * nb))
