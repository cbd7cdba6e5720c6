"""Small rules with one owner in ``data``: a file's SHA-256, the LPS/RAS flip on points, the voxel-centre
grid and 4x4 matrix files. Every other module calls these, so each is pinned here against an independent
computation (hashlib on the whole bytes, a hand-written flip, hand-computed voxel centres)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from MedDIFTLib.data.digest import file_sha256, hash_file_into
from MedDIFTLib.data.geometry import LPS_TO_RAS, Grid, apply_affine, flip_lps_ras, make_ijk_to_ras
from MedDIFTLib.data.image_io import is_itk_transform_text, read_matrix_file
from MedDIFTLib.errors import InputError


def test_file_sha256_reads_in_blocks_and_equals_the_digest_of_the_whole_bytes(tmp_path):
    data = bytes(range(256)) * 9000  # over two read blocks, not a whole number of them
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
    h = hashlib.sha256(b"prefix")
    hash_file_into(h, path)
    assert h.hexdigest() == hashlib.sha256(b"prefix" + data).hexdigest()


def test_lps_ras_flip_negates_x_and_y_and_is_its_own_inverse():
    pts = np.array([[1.0, -2.0, 3.0], [0.5, 4.0, -6.0]])
    np.testing.assert_array_equal(flip_lps_ras(pts), [[-1.0, 2.0, 3.0], [-0.5, -4.0, -6.0]])
    np.testing.assert_array_equal(flip_lps_ras(flip_lps_ras(pts)), pts)
    np.testing.assert_array_equal(flip_lps_ras(pts), apply_affine(LPS_TO_RAS, pts))  # same as the matrix
    field = np.ones((2, 3, 4, 3))  # vectors on a grid: the last axis is flipped
    assert flip_lps_ras(field)[1, 2, 3].tolist() == [-1.0, -1.0, 1.0]


def test_voxel_centres_are_ijk_in_c_order_through_the_matrix():
    m = make_ijk_to_ras((2.0, 3.0, 0.5), (10.0, -4.0, 1.0), np.diag([-1.0, 1.0, 1.0]))
    centres = Grid((2, 3, 4), m).voxel_centres()
    assert centres.shape == (24, 3)
    np.testing.assert_allclose(centres[0], [10.0, -4.0, 1.0], atol=1e-12)  # exact arithmetic on these numbers
    # [i=1, j=2, k=3] is the last row: x = 10 - 2*1, y = -4 + 3*2, z = 1 + 0.5*3
    np.testing.assert_allclose(centres.reshape(2, 3, 4, 3)[1, 2, 3], [8.0, 2.0, 2.5], atol=1e-12)
    np.testing.assert_allclose(centres[1], [10.0, -4.0, 1.5], atol=1e-12)  # k runs fastest


def test_matrix_files_in_text_and_npy_read_the_same_and_wrong_shapes_are_named(tmp_path):
    m = make_ijk_to_ras((1.0, 2.0, 3.0), (4.0, 5.0, 6.0))
    np.savetxt(tmp_path / "m.txt", m)
    np.save(tmp_path / "m.npy", m)
    np.testing.assert_array_equal(read_matrix_file(tmp_path / "m.txt"), m)
    np.testing.assert_array_equal(read_matrix_file(tmp_path / "m.npy"), m)
    np.savetxt(tmp_path / "bad.txt", np.eye(3))
    with pytest.raises(InputError, match=r"bad\.txt: the initial transform must be a 4x4 homogeneous RAS matrix"):
        read_matrix_file(tmp_path / "bad.txt", "the initial transform")
    (tmp_path / "words.txt").write_text("not numbers\n")
    with pytest.raises(InputError, match=r"words\.txt: not a 4x4 matrix"):
        read_matrix_file(tmp_path / "words.txt")
    with pytest.raises(InputError, match=r"gone\.txt: the matrix file not found"):
        read_matrix_file(tmp_path / "gone.txt")


def test_itk_transform_text_is_told_from_a_plain_matrix(tmp_path):
    (tmp_path / "itk.txt").write_text("#Insight Transform File V1.0\n#Transform 0\nTransform: AffineTransform\n")
    np.savetxt(tmp_path / "plain.txt", np.eye(4))
    assert is_itk_transform_text(tmp_path / "itk.txt")
    assert not is_itk_transform_text(tmp_path / "plain.txt")
