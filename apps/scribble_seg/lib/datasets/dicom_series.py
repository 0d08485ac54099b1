"""A 3D volume written as a DICOM series (CT or MR Image Storage, one file per slice), for a PACS.

The geometry is carried the way DICOM readers rebuild it (SimpleITK's ``ImageSeriesReader``,
OHIF, ``itkimage2segimage``), with ``x`` the column index, ``y`` the row index and ``k`` the slice:

* ``ImagePositionPatient`` of slice ``k``: the physical point of voxel ``(0, 0, k)``;
* ``ImageOrientationPatient``: the direction's first two columns (row direction, column direction);
  the slice normal is their cross product, so a left-handed direction (``det < 0``) is first turned
  right-handed by reorienting to LPS -- the same voxels at the same physical points;
* ``PixelSpacing``: ``(row spacing, column spacing)`` = ``(spacing_y, spacing_x)``;
* voxels stored as signed 16-bit integers with ``RescaleSlope`` 1 and ``RescaleIntercept`` 0, so an
  integer volume in [-32768, 32767] reads back with identical voxels; any other volume is refused.

UIDs are derived from the ``uid_seed`` text, so writing the same case again yields the same study,
series and instance UIDs (a PACS then keeps one copy).
"""

import datetime
import os
from typing import Dict, List

import numpy as np
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

SOP_CLASSES = {"CT": "1.2.840.10008.5.1.4.1.1.2", "MR": "1.2.840.10008.5.1.4.1.1.4"}
"""Image Storage SOP classes by modality (CT Image Storage, MR Image Storage)."""


def series_uids(uid_seed: str) -> Dict[str, str]:
    """Study, series and frame-of-reference UIDs derived from ``uid_seed`` (stable across runs)."""
    return {
        key: generate_uid(entropy_srcs=[uid_seed, key])
        for key in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID")
    }


def _integer_voxels(voxels: np.ndarray) -> np.ndarray:
    if not np.all(np.isfinite(voxels)) or not np.array_equal(voxels, np.round(voxels)):
        raise ValueError("only integer volumes are written as DICOM series (their voxels read back identical)")
    if voxels.min() < -32768 or voxels.max() > 32767:
        raise ValueError(f"voxels span [{voxels.min()}, {voxels.max()}], beyond signed 16 bits")
    return voxels.astype(np.int16)


def write_series(image: sitk.Image, out_dir: str, modality: str, uid_seed: str, patient_id: str) -> List[str]:
    """Write ``image`` (3D) into ``out_dir`` as one DICOM file per slice; returns the file paths.

    Args:
        image: the volume, any orientation; (x, y, k) = (columns, rows, slices).
        modality: ``CT`` or ``MR``.
        uid_seed: text the UIDs derive from (e.g. the case name).
        patient_id: PatientID and PatientName.
    """
    if modality not in SOP_CLASSES:
        raise ValueError(f"modality {modality!r}: expected one of {sorted(SOP_CLASSES)}")
    if image.GetDimension() != 3:
        raise ValueError(f"a DICOM series needs a 3D volume, got {image.GetDimension()}D")
    if np.linalg.det(np.reshape(image.GetDirection(), (3, 3))) < 0:
        image = sitk.DICOMOrient(image, "LPS")
    voxels = _integer_voxels(sitk.GetArrayFromImage(image))  # (k, y, x)
    direction = np.reshape(image.GetDirection(), (3, 3))
    spacing = image.GetSpacing()
    uids = series_uids(uid_seed)
    now = datetime.datetime.now()
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for k in range(voxels.shape[0]):
        sop_uid = generate_uid(entropy_srcs=[uid_seed, "SOPInstanceUID", str(k)])
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = SOP_CLASSES[modality]
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = os.path.join(out_dir, f"slice_{k:04d}.dcm")
        ds = FileDataset(path, Dataset(), file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = SOP_CLASSES[modality], sop_uid
        for key, value in uids.items():
            setattr(ds, key, value)
        ds.Modality = modality
        ds.PatientID = ds.PatientName = patient_id
        ds.StudyDate = ds.SeriesDate = now.strftime("%Y%m%d")
        ds.StudyTime = ds.SeriesTime = now.strftime("%H%M%S")
        ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "1", 1, k + 1
        ds.AccessionNumber, ds.ReferringPhysicianName = "", ""
        ds.StudyDescription = ds.SeriesDescription = patient_id
        ds.ImagePositionPatient = [f"{v:.6f}" for v in image.TransformIndexToPhysicalPoint((0, 0, k))]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in (*direction[:, 0], *direction[:, 1])]
        ds.PixelSpacing = [f"{spacing[1]:.6f}", f"{spacing[0]:.6f}"]
        ds.SliceThickness = ds.SpacingBetweenSlices = f"{spacing[2]:.6f}"
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = voxels.shape[1], voxels.shape[2]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = "1", "0", "US"
        ds.PixelData = np.ascontiguousarray(voxels[k]).tobytes()
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(path, write_like_original=False)
        paths.append(path)
    return paths


def read_series(series_dir: str) -> sitk.Image:
    """The volume of a DICOM series folder, as a PACS client rebuilds it (slices sorted by position)."""
    reader = sitk.ImageSeriesReader()
    names = reader.GetGDCMSeriesFileNames(series_dir)
    if not names:
        raise ValueError(f"no DICOM series in {series_dir}")
    reader.SetFileNames(names)
    return reader.Execute()
