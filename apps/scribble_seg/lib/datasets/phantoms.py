"""Deterministic cardiac-like phantoms: the embedded sample dataset of scribble_seg.

A short-axis cine-MR-like stack, anisotropic like the real thing (default 160 x 160 x 16 voxels
of 1.5 x 1.5 x 8 mm, arrays ``(H, W, D)`` with slices along the last axis):

* **LV blood pool** (class 1): an ellipse of radius ``R_lv`` at the base that closes as a
  half-ellipsoid before the apex, ``r_endo(t) = R_lv * sqrt(1 - (t / 0.9)^2)``, ``t`` in [0, 1]
  from base to apex;
* **myocardium** (class 2): the ring between the endocardium and the epicardium
  ``r_epi(t) = (R_lv + T) * sqrt(1 - t^2)`` (so the apex is myocardium only);
* **RV blood pool** (class 3): an ellipse beside the septum minus the epicardium -- a crescent --
  that ends before the apex (``t_rv`` in [0.6, 0.8]);
* background: body ellipse with fat rim, lungs wrapping the heart, a liver below, air outside.

Shape, position, orientation, size, wall thickness, intensities, noise and bias differ per
``seed``. The image is rendered on a grid supersampled 2 x 2 x 4 and averaged (partial volume
along the 8 mm slices), blurred in-plane (PSF), multiplied by a smooth bias field, given a
per-slice in-plane shift (breath-hold misregistration) and Rician noise. The ground truth is the
majority class of the sub-samples of each voxel.
"""

from typing import Dict, Tuple

import numpy as np
from scipy import ndimage

from .study import LabelledVolume

PHANTOM_LABELS: Dict[str, int] = {"lv": 1, "myocardium": 2, "rv": 3}
"""Class ids of the phantom ground truth."""

PHANTOM_CONF: Dict[str, object] = {
    "labels": PHANTOM_LABELS,
    "anchor_structure": "myocardium",
    "scribble2d5_class_supervoxel_mm": {"myocardium": 6},
}
"""The cardiac knowledge the app's generic code leaves out, as the phantom studies' own conf
(written beside them, :data:`lib.conf.DATASET_CONF`):

* ``anchor_structure``: the myocardium borders every other structure of the heart (the LV inside
  it, the RV along the septum), so a segmentation keeps, of every other class, the component
  bordering it most: a false blob of one class can outgrow the true structure, but it does not
  border the myocardium as much (:func:`lib.scribbles.components.anchored_labels`).
* ``scribble2d5_class_supervoxel_mm``: the myocardial wall (7-11 mm) is thinner than Scribble2D5's
  12 mm supervoxels; one crossed by a myocardium stroke spills into the tissue around the ring,
  6 mm ones keep its pseudo labels on the wall and leave every other class as it is."""


def _ellipse(x, y, cx, cy, a, b, angle):
    """Boolean inside of an ellipse with semi-axes ``a`` (along ``angle``) and ``b``."""
    c, s = np.cos(angle), np.sin(angle)
    u = (x - cx) * c + (y - cy) * s
    v = -(x - cx) * s + (y - cy) * c
    return (u / max(a, 1e-6)) ** 2 + (v / max(b, 1e-6)) ** 2 <= 1.0


def _cap(t, t_end):
    """Half-ellipsoid profile: 1 at the base (t = 0), 0 from ``t_end`` on; 0 above the base."""
    r = np.sqrt(np.clip(1.0 - (t / t_end) ** 2, 0.0, None))
    return np.where(t < 0, 0.0, r)


def make_cardiac_phantom(
    seed: int,
    shape: Tuple[int, int, int] = (160, 160, 16),
    spacing: Tuple[float, float, float] = (1.5, 1.5, 8.0),
    supersample: Tuple[int, int, int] = (2, 2, 4),
) -> LabelledVolume:
    """Render phantom number ``seed`` (same seed => same volume, bit for bit).

    Args:
        seed: phantom identity.
        shape: ``(H, W, D)`` voxels.
        spacing: voxel size in mm.
        supersample: sub-samples per voxel and axis (partial volume).
    """
    rng = np.random.default_rng(seed)
    H, W, D = shape
    sx, sy, sz = spacing
    kx, ky, kz = supersample

    # geometry (mm), drawn once per phantom
    cx, cy = rng.uniform(-15, 15, size=2)
    r_lv = rng.uniform(19, 27)
    wall = rng.uniform(7, 11)
    lv_angle, lv_ecc = rng.uniform(0, np.pi), rng.uniform(0.0, 0.15)
    rv_dir = rng.uniform(0, 2 * np.pi)
    r_epi0 = r_lv + wall
    rv_dist = r_epi0 * rng.uniform(0.8, 1.0)
    rv_a, rv_b = r_epi0 * rng.uniform(1.1, 1.35), r_epi0 * rng.uniform(0.6, 0.85)
    t_rv = rng.uniform(0.6, 0.8)
    extent = D * sz
    z_base = -extent / 2 + rng.uniform(0.5, 2.5) * sz
    length = rng.uniform(0.62, 0.8) * extent
    body_a, body_b = rng.uniform(100, 112), rng.uniform(78, 90)
    fat = rng.uniform(5, 9)
    lung_dx, lung_a, lung_b = rng.uniform(48, 58), rng.uniform(28, 36), rng.uniform(45, 60)
    liver_z = z_base + rng.uniform(0.55, 0.75) * length

    # intensities (bSSFP-like: bright blood, dark myocardium)
    i_blood = rng.uniform(0.75, 0.95)
    i_rv = i_blood * rng.uniform(0.9, 1.0)
    i_myo = rng.uniform(0.22, 0.35)
    i_tissue = rng.uniform(0.40, 0.52)
    i_fat, i_lung, i_liver, i_air = rng.uniform(0.8, 0.95), rng.uniform(0.04, 0.1), rng.uniform(0.5, 0.6), 0.01
    texture = 1.0 + 0.08 * ndimage.gaussian_filter(rng.standard_normal((H * kx, W * ky)), 6)
    slice_shift = rng.normal(0.0, 1.2, size=(D, 2))

    # sub-sample coordinates (mm), voxel centres symmetric about 0
    def axis(n, s, k):
        return ((np.arange(n * k) + 0.5) / k - n / 2) * s

    xs, ys, zs = axis(H, sx, kx), axis(W, sy, ky), axis(D, sz, kz)
    x, y = np.meshgrid(xs, ys, indexing="ij")

    body = _ellipse(x, y, 0, 0, body_a, body_b, 0)
    inner = _ellipse(x, y, 0, 0, body_a - fat, body_b - fat, 0)
    all_lungs = _ellipse(x, y, -lung_dx, -5, lung_a, lung_b, 0.2) | _ellipse(x, y, lung_dx, -5, lung_a, lung_b, -0.2)
    all_liver = _ellipse(x, y, -20, 25, 60, 45, 0.3)

    image = np.zeros(shape, dtype=np.float64)
    votes = np.zeros((len(PHANTOM_LABELS) + 1,) + shape, dtype=np.float64)
    for iz, z in enumerate(zs):
        d = iz // kz
        hx, hy = cx + slice_shift[d, 0], cy + slice_shift[d, 1]
        t = (z - z_base) / length
        endo = _cap(t, 0.9) * r_lv
        epi = _cap(t, 1.0) * r_epi0
        rv_scale = _cap(t, t_rv)
        lv = (
            _ellipse(x, y, hx, hy, endo * (1 + lv_ecc), endo * (1 - lv_ecc), lv_angle)
            if endo > 0
            else np.zeros_like(x, bool)
        )
        epi_m = (
            _ellipse(x, y, hx, hy, epi * (1 + lv_ecc), epi * (1 - lv_ecc), lv_angle)
            if epi > 0
            else np.zeros_like(x, bool)
        )
        myo = epi_m & ~lv
        if rv_scale > 0:
            rx, ry = hx + rv_dist * np.cos(rv_dir), hy + rv_dist * np.sin(rv_dir)
            rv = _ellipse(x, y, rx, ry, rv_b * rv_scale, rv_a * rv_scale, rv_dir) & ~epi_m
        else:
            rv = np.zeros_like(x, bool)
        heart = epi_m | rv
        near_heart = ndimage.binary_dilation(heart, iterations=4)
        lungs = all_lungs & ~near_heart
        liver = all_liver & ~near_heart if z > liver_z else np.zeros_like(x, bool)

        sub = np.full(x.shape, i_air)
        sub[body] = i_fat
        sub[inner] = i_tissue * texture[inner]
        sub[inner & liver] = i_liver * texture[inner & liver]
        sub[inner & lungs] = i_lung
        sub[myo] = i_myo * texture[myo]
        sub[lv] = i_blood
        sub[rv] = i_rv
        image[..., d] += sub.reshape(H, kx, W, ky).mean(axis=(1, 3)) / kz
        for k, region in ((1, lv), (2, myo), (3, rv)):
            votes[k, ..., d] += region.reshape(H, kx, W, ky).mean(axis=(1, 3)) / kz
    votes[0] = 1.0 - votes[1:].sum(axis=0)
    label = np.argmax(votes, axis=0).astype(np.uint8)

    # acquisition: in-plane PSF, smooth bias field, Rician noise
    image = ndimage.gaussian_filter(image, sigma=(0.6, 0.6, 0))
    gx, gy, gz = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    a = rng.uniform(-1, 1, size=5) * rng.uniform(0.1, 0.3)
    bias = np.exp(a[0] * gx + a[1] * gy + a[2] * gz + a[3] * gx * gy + a[4] * (gx**2 - gy**2))
    noise = rng.uniform(0.02, 0.05)
    signal = image * bias
    image = np.sqrt((signal + noise * rng.standard_normal(shape)) ** 2 + (noise * rng.standard_normal(shape)) ** 2)
    return LabelledVolume(image=(1000.0 * image).astype(np.float32), label=label, spacing=tuple(map(float, spacing)))
