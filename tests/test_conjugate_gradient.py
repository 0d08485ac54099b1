"""The random walker's solver and system: SciPy's iterates bit for bit, and the Laplacian on the
free voxels as the definition gives it."""

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.linalg import cg

from lib.scribbles.conjugate_gradient import jacobi_cg
from lib.scribbles.random_walk import edge_weights, free_system

SPACING = (0.8, 1.1, 3.0)


def _volume(seed=0, shape=(9, 7, 5)):
    rng = np.random.default_rng(seed)
    image = rng.random(shape).astype(np.float32)
    free = rng.random(shape) < 0.7
    return image, free


def _system(seed=0, shift=0.05):
    image, free = _volume(seed)
    A, rows, _, weights = free_system(image, free, SPACING, 30.0, shift=shift)
    b = np.bincount(rows, weights=weights * (np.arange(rows.size) % 3 == 0), minlength=A.shape[0])
    return A, b + shift * np.random.default_rng(seed).random(A.shape[0])


@pytest.mark.parametrize("start", ["zeros", "half", "random"])
@pytest.mark.parametrize("maxiter", [3, 500])
def test_jacobi_cg_equals_scipy_cg_bit_for_bit(start, maxiter):
    """The same iterates as SciPy's Jacobi-preconditioned CG, to the last bit: voxels no stroke
    reaches keep their start exactly, and a rounding change would decide their ties."""
    A, b = _system()
    x0 = {"zeros": None, "half": np.full(b.size, 0.5), "random": np.random.default_rng(1).random(b.size)}[start]
    expected, _ = cg(A, b, x0=x0, rtol=1e-6, maxiter=maxiter, M=sp.diags(1.0 / A.diagonal()))
    x = jacobi_cg(A, b, x0=x0, tol=1e-6, maxiter=maxiter)
    assert x.dtype == np.float64 and np.array_equal(x, expected)
    if maxiter == 500:
        assert np.linalg.norm(A @ x - b) < 1e-6 * np.linalg.norm(b)
    if x0 is not None:
        assert not np.shares_memory(x, x0)


def test_jacobi_cg_of_a_zero_right_hand_side_is_zero():
    A, b = _system()
    x = jacobi_cg(A, np.zeros_like(b), x0=np.full(b.size, 0.5))
    assert np.array_equal(x, np.zeros_like(b))


def test_free_system_is_the_laplacian_on_the_free_voxels():
    """``L_UU + shift I`` entry by entry from the definition (6-neighbours, conductance-scaled
    weights), columns sorted in every row, and every edge to a fixed voxel listed once."""
    image, free = _volume(3)
    beta, shift = 30.0, 0.25
    sigma = float(image.std())
    A, rows, fixed_index, fixed_weights = free_system(image, free, SPACING, beta, sigma=sigma, shift=shift)
    index = np.flatnonzero(free)
    row_of = {int(v): r for r, v in enumerate(index)}
    n = index.size
    dense = np.zeros((n, n))
    fixed = {}
    for r, v in enumerate(index):
        p = np.unravel_index(v, image.shape)
        dense[r, r] = shift
        for ax in range(3):
            for sign in (-1, 1):
                q = list(p)
                q[ax] += sign
                if not 0 <= q[ax] < image.shape[ax]:
                    continue
                step = np.float32(image[p]) - np.float32(image[tuple(q)])
                w = float(edge_weights(np.array([step]), SPACING[ax], min(SPACING), beta, sigma)[0])
                dense[r, r] += w
                j = int(np.ravel_multi_index(q, image.shape))
                if j in row_of:
                    dense[r, row_of[j]] -= w
                else:
                    fixed[(r, j)] = w
    assert A.has_sorted_indices
    np.testing.assert_allclose(A.toarray(), dense, rtol=1e-12, atol=0)
    got = {(int(r), int(j)): float(w) for r, j, w in zip(rows, fixed_index, fixed_weights)}
    assert len(got) == rows.size == len(fixed)
    assert got.keys() == fixed.keys()
    np.testing.assert_allclose([got[k] for k in fixed], list(fixed.values()), rtol=1e-12)
    # the same system from the flat indices of the free voxels
    B, rows_b, fixed_b, weights_b = free_system(image, index, SPACING, beta, sigma=sigma, shift=shift)
    assert (A != B).nnz == 0 and np.array_equal(rows, rows_b) and np.array_equal(fixed_b, fixed_index)
