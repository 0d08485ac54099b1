"""Labelled volumes and how they are written as a MONAI Label studies folder.

A studies folder as the server reads it, with the dense ground truth kept **outside** it::

    <root>/studies/<case>.nii.gz          images (the datastore)
    <root>/studies/labels/final/...       scribbles, written through the datastore by the CLI
    <root>/groundtruth/<case>.nii.gz      dense masks: evaluation only, never seen by training
"""

import os
from dataclasses import dataclass
from typing import Tuple

import nibabel as nib
import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class LabelledVolume:
    """An image with its dense ground truth.

    Attributes:
        image: ``(H, W, D)`` float32 intensities.
        label: ``(H, W, D)`` uint8 class indices (0 = background).
        spacing: voxel size in mm per axis.
    """

    image: np.ndarray
    label: np.ndarray
    spacing: Tuple[float, float, float]

    def __post_init__(self):
        if self.image.ndim != 3 or self.image.shape != self.label.shape:
            raise ValueError(f"image {self.image.shape} and label {self.label.shape} must be the same 3D shape")

    @property
    def affine(self) -> np.ndarray:
        """RAS affine with the volume centred on the world origin."""
        return centred_affine(self.image.shape, self.spacing)


def centred_affine(shape, spacing) -> np.ndarray:
    """Diagonal affine of ``spacing`` whose volume centre is the world origin."""
    affine = np.diag([*map(float, spacing), 1.0])
    affine[:3, 3] = -0.5 * (np.asarray(shape[:3]) - 1) * np.asarray(spacing, dtype=float)
    return affine


def resample(volume: LabelledVolume, spacing) -> LabelledVolume:
    """Resample to ``spacing`` mm (linear for the image, nearest for the label)."""
    zoom = np.asarray(volume.spacing, dtype=float) / np.asarray(spacing, dtype=float)
    image = ndimage.zoom(volume.image.astype(np.float32), zoom, order=1)
    label = ndimage.zoom(volume.label, zoom, order=0)
    return LabelledVolume(image=image, label=label.astype(np.uint8), spacing=tuple(map(float, spacing)))


def crop_to_label(volume: LabelledVolume, margin_mm: float) -> LabelledVolume:
    """Crop to the bounding box of the foreground plus ``margin_mm`` on every side."""
    fg = np.argwhere(volume.label > 0)
    if not len(fg):
        raise ValueError("cannot crop to an empty label")
    margin = np.ceil(margin_mm / np.asarray(volume.spacing)).astype(int)
    lo = np.maximum(fg.min(0) - margin, 0)
    hi = np.minimum(fg.max(0) + margin + 1, volume.label.shape)
    sl = tuple(slice(a, b) for a, b in zip(lo, hi))
    return LabelledVolume(image=volume.image[sl], label=volume.label[sl], spacing=volume.spacing)


def read_spacing(path: str) -> Tuple[float, float, float]:
    """Voxel size in mm per array axis (MONAI's (H, W, D) order), from the header only."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    reader.ReadImageInformation()
    spacing = tuple(float(s) for s in reader.GetSpacing())
    if len(spacing) != 3:
        raise ValueError(f"{path} is {len(spacing)}D; volumes must be 3D")
    return spacing


def write_nifti(path: str, array: np.ndarray, affine: np.ndarray) -> str:
    """Write ``array`` as NIfTI (directories created); integer-valued images are stored as int16."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    a = np.asarray(array)
    if a.dtype.kind == "f" and np.abs(a).max() < 32000:
        a = np.round(a).astype(np.int16)
    nib.save(nib.Nifti1Image(a, affine), path)
    return path


def write_case(root: str, case_id: str, volume: LabelledVolume) -> Tuple[str, str]:
    """Write ``studies/<case_id>.nii.gz`` and ``groundtruth/<case_id>.nii.gz`` under ``root``."""
    image = write_nifti(os.path.join(root, "studies", f"{case_id}.nii.gz"), volume.image, volume.affine)
    truth = write_nifti(
        os.path.join(root, "groundtruth", f"{case_id}.nii.gz"), volume.label.astype(np.uint8), volume.affine
    )
    return image, truth
