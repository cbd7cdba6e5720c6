"""Methods the evaluation compares: each maps a case's fixed landmarks into its moving scan (RAS mm).

Registration baselines all follow the same rule: register the moving image to
the fixed one, then push the fixed landmarks through the resulting
*resampling* transform, which maps fixed points to moving points (ITK,
elastix, ANTs and ConvexAdam all define it that way; ITK tools work in LPS).
``Testing/Python/test_eval_methods.py`` checks each one on a known shift, so a
transform applied backwards or an LPS/RAS slip fails a test.

Optional baselines need packages from the ``baselines`` extra
(``pip install "meddift[baselines]"``); :func:`unavailable_reason` says what is
missing instead of failing the whole evaluation.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path

import numpy as np

from ..data.geometry import Grid, Volume, flip_lps_ras, resample
from ..errors import InputError
from ..matching.priors import DEFAULT_RADIUS_MM
from ..options import BackboneName, PriorKind

UNIGRADICON_WEIGHTS_ENV = "MEDDIFT_UNIGRADICON_WEIGHTS"


class Method:
    """Maps a case's fixed landmarks into its moving scan."""

    name = "method"
    requires: tuple = ()  # importable modules this method needs
    install_hint = 'pip install "meddift[baselines]"'

    def map_points(self, case) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def end_case(self) -> None:
        """Called after every method has run on a case: drop what was kept for it."""

    def regularity(self, case) -> dict | None:
        """After :meth:`map_points`: the regularity of the method's map over the fixed scan (folding
        percent, SD of the log-Jacobian; :meth:`~MedDIFTLib.registration.DenseField.jacobian_stats`),
        or None where the method keeps no map."""
        return None

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """None when the method can run here, else why not and how to fix it."""
        missing = [m for m in cls.requires if importlib.util.find_spec(m) is None]
        if missing:
            return f"{cls.name}: skipped, {', '.join(missing)} not installed ({cls.install_hint})"
        return None


class Identity(Method):
    """The same world point: the error before registration."""

    name = "identity"

    def map_points(self, case) -> np.ndarray:
        return case.fixed_points.points.copy()


class MedDIFTMethod(Method):
    """The MedDIFT pipeline (MAISI features when available, else the weight-free descriptor)."""

    def __init__(
        self,
        engine=None,
        radius_mm: float | None = DEFAULT_RADIUS_MM,
        name: str | None = None,
        session=None,
        prior: str | None = None,
    ):
        from ..matching.search import MatchOptions
        from ..session import EngineOptions, MatchSession

        self.session = session or MatchSession(
            engine or EngineOptions(use_cache=False), MatchOptions(radius_mm=radius_mm)
        )
        self.radius_mm = self.session.matching.radius_mm
        self.prior = prior or PriorKind.NONE.value  # no prior: the paper's argmax (the session's own default is dense)
        self.name = name or self.default_name(self.session.backbone.name == BackboneName.MAISI)

    def default_name(self, maisi: bool) -> str:
        return "MedDIFT (MAISI)" if maisi else "MIND-SSC (weight-free MedDIFT pipeline)"

    def end_case(self) -> None:
        self.session.forget()

    def map_points(self, case) -> np.ndarray:
        return self.session.match(case.fixed, case.moving, case.fixed_points, prior=self.prior).points.points


class MedDIFTDense(MedDIFTMethod):
    """Points from the dense registration of the backbone's features (``--prior dense``): the map's position."""

    def __init__(self, engine=None, radius_mm: float | None = None, name: str | None = None, session=None):
        super().__init__(engine, radius_mm, name, session, prior="dense")

    def regularity(self, case) -> dict | None:
        return self.session.register(case.fixed, case.moving, self.session.registration).jacobian_stats(case.fixed)

    def default_name(self, maisi: bool) -> str:
        window = f" + argmax {self.radius_mm:g} mm" if self.radius_mm else ""
        return f"MedDIFT dense{window} ({'MAISI' if maisi else 'MIND-SSC, weight-free'})"


class MedDIFTDenseArgmax(MedDIFTDense):
    """The dense map's position sharpened by the paper's argmax within a small window around it."""

    def __init__(self, engine=None, radius_mm: float | None = None, name: str | None = None, session=None):
        from ..matching.priors import DENSE_CHECK_MM

        super().__init__(engine, radius_mm or DENSE_CHECK_MM, name, session)


def _float_image(volume: Volume):
    import SimpleITK as sitk

    from ..data.image_io import to_sitk

    return sitk.Cast(to_sitk(volume), sitk.sitkFloat32)


class SimpleITKBSpline(Method):
    """Free-form deformation (B-spline) with a multi-resolution schedule, SimpleITK's registration."""

    name = "SimpleITK B-spline"

    def __init__(self, mesh_mm: float = 40.0, iterations: int = 50, shrink=(4, 2, 1), sigmas=(2.0, 1.0, 0.0)):
        self.mesh_mm, self.iterations, self.shrink, self.sigmas = mesh_mm, iterations, shrink, sigmas

    def transform(self, case):
        import SimpleITK as sitk

        fixed, moving = _float_image(case.fixed), _float_image(case.moving)
        extent = np.asarray(fixed.GetSize()) * np.asarray(fixed.GetSpacing())
        mesh = [max(1, int(round(e / self.mesh_mm))) for e in extent]
        tx = sitk.BSplineTransformInitializer(fixed, mesh)
        reg = sitk.ImageRegistrationMethod()
        reg.SetMetricAsMeanSquares()
        reg.SetMetricSamplingStrategy(reg.RANDOM)
        reg.SetMetricSamplingPercentage(0.1, seed=0)
        reg.SetInterpolator(sitk.sitkLinear)
        reg.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=1e-5, numberOfIterations=self.iterations)
        reg.SetShrinkFactorsPerLevel(list(self.shrink))
        reg.SetSmoothingSigmasPerLevel(list(self.sigmas))
        reg.SetInitialTransform(tx, inPlace=True)
        return reg.Execute(fixed, moving)

    def map_points(self, case) -> np.ndarray:
        from ..matching.priors import itk_transform_prior

        return itk_transform_prior(self.transform(case))(case.fixed_points.points)


class ElastixBSpline(Method):
    """elastix (itk-elastix): affine then B-spline, 3 resolutions, mutual information; points by transformix."""

    name = "elastix B-spline"
    requires = ("itk",)

    def __init__(self, grid_spacing_mm: float = 16.0, iterations: int = 250, resolutions: int = 3):
        self.grid_spacing_mm, self.iterations, self.resolutions = grid_spacing_mm, iterations, resolutions

    @classmethod
    def unavailable_reason(cls) -> str | None:
        reason = super().unavailable_reason()
        if reason is None:
            import itk

            if not hasattr(itk, "elastix_registration_method"):
                return f"{cls.name}: skipped, itk-elastix not installed ({cls.install_hint})"
        return reason

    def map_points(self, case) -> np.ndarray:
        import itk

        from ..data.image_io import write_volume
        from ..data.landmark_io import read_elastix_output, write_elastix

        with tempfile.TemporaryDirectory(prefix="meddift-elastix-") as tmp_name:
            tmp = Path(tmp_name)
            images = []
            for name, vol in (("fixed", case.fixed), ("moving", case.moving)):
                write_volume(Volume(vol.array.astype(np.float32), vol.ijk_to_ras), tmp / f"{name}.mha")
                images.append(itk.imread(str(tmp / f"{name}.mha"), itk.F))
            params = itk.ParameterObject.New()
            for kind in ("affine", "bspline"):
                pm = params.GetDefaultParameterMap(
                    kind, self.resolutions, self.grid_spacing_mm if kind == "bspline" else 1.0
                )
                pm["MaximumNumberOfIterations"] = [str(self.iterations)]
                pm["NumberOfSpatialSamples"] = ["4096"]
                params.AddParameterMap(pm)
            _, result = itk.elastix_registration_method(
                images[0], images[1], parameter_object=params, log_to_console=False, output_directory=str(tmp)
            )
            write_elastix(case.fixed_points, tmp / "fixed_points.txt", kind="point")
            itk.transformix_pointset(
                images[1],
                result,
                fixed_point_set_file_name=str(tmp / "fixed_points.txt"),
                output_directory=str(tmp),
                log_to_console=False,
            )
            return read_elastix_output(tmp / "outputpoints.txt", field="OutputPoint").points


class AntsSyN(Method):
    """ANTs SyN (antspyx): affine then symmetric diffeomorphic normalisation."""

    name = "ANTs SyN"
    requires = ("ants",)

    def __init__(self, transform: str = "SyN", iterations=(40, 20, 0)):
        self.transform, self.iterations = transform, tuple(iterations)

    def map_points(self, case) -> np.ndarray:
        import ants
        import pandas as pd

        from ..data.image_io import write_volume

        with tempfile.TemporaryDirectory(prefix="meddift-ants-") as tmp:
            paths = []
            for name, vol in (("fixed", case.fixed), ("moving", case.moving)):
                paths.append(
                    write_volume(Volume(vol.array.astype(np.float32), vol.ijk_to_ras), Path(tmp) / f"{name}.nii.gz")
                )
            fixed, moving = (ants.image_read(str(p)) for p in paths)
            reg = ants.registration(
                fixed,
                moving,
                type_of_transform=self.transform,
                reg_iterations=self.iterations,
                outprefix=str(Path(tmp) / "reg_"),
                random_seed=0,
            )
            lps = flip_lps_ras(case.fixed_points.points)
            # ANTs maps points opposite to images: the forward (image) transforms take fixed points to moving ones
            out = ants.apply_transforms_to_points(3, pd.DataFrame(lps, columns=["x", "y", "z"]), reg["fwdtransforms"])
            return flip_lps_ras(out[["x", "y", "z"]].to_numpy(dtype=np.float64))


class ConvexAdam(Method):
    """ConvexAdam (PyPI ``convexadam``): MIND features, coupled convex optimisation, Adam refinement.

    It works on two arrays of the same shape, so the moving scan is first
    resampled onto the fixed grid; its displacement (fixed voxel units) then
    gives each fixed landmark's position in that grid, hence in world space.
    """

    name = "ConvexAdam"
    requires = ("convexAdam",)

    def __init__(self, grid_sp: int = 4, disp_hw: int = 6, iterations: int = 80, lambda_weight: float = 1.25):
        self.grid_sp, self.disp_hw, self.iterations, self.lambda_weight = grid_sp, disp_hw, iterations, lambda_weight

    def displacement(self, case) -> np.ndarray:
        import contextlib
        import io

        import torch
        from convexAdam.convex_adam_MIND import convex_adam_pt

        moving = resample(case.moving, Grid(case.fixed.shape, case.fixed.ijk_to_ras), order=1, fill_value=-1000.0)
        fixed_arr = np.clip(case.fixed.array.astype(np.float32), -1000, 1500)
        moving_arr = np.clip(moving.array.astype(np.float32), -1000, 1500)
        with contextlib.redirect_stdout(io.StringIO()):  # it prints a float16 warning on the CPU
            return convex_adam_pt(
                fixed_arr,
                moving_arr,
                grid_sp=self.grid_sp,
                disp_hw=self.disp_hw,
                selected_niter=self.iterations,
                lambda_weight=self.lambda_weight,
                dtype=torch.float32,
                device=torch.device("cpu"),
            )

    def map_points(self, case) -> np.ndarray:
        from scipy import ndimage

        disp = self.displacement(case)
        ijk = case.fixed.world_to_ijk(case.fixed_points.points)
        d = np.stack([ndimage.map_coordinates(disp[..., c], ijk.T, order=1, mode="nearest") for c in range(3)], 1)
        return case.fixed.ijk_to_world(ijk + d)


class UniGradICON(Method):
    """uniGradICON (PyPI ``unigradicon``) with a weights file the user provides.

    The weights cannot be downloaded here, and the package would otherwise
    fetch them on its own: the file must be named by ``MEDDIFT_UNIGRADICON_WEIGHTS``
    (``Step_2_final.trch`` from the uniGradICON release).
    """

    name = "uniGradICON"
    requires = ("unigradicon", "icon_registration", "itk")
    install_hint = "pip install unigradicon, and set MEDDIFT_UNIGRADICON_WEIGHTS to its Step_2_final.trch"

    @classmethod
    def weights_path(cls) -> Path | None:
        value = os.environ.get(UNIGRADICON_WEIGHTS_ENV, "").strip()
        return Path(value).expanduser() if value else None

    @classmethod
    def unavailable_reason(cls) -> str | None:
        reason = super().unavailable_reason()
        if reason:
            return reason
        path = cls.weights_path()
        if path is None:
            return f"{cls.name}: skipped, no weights file ({UNIGRADICON_WEIGHTS_ENV} is not set)"
        if not path.is_file():
            return f"{cls.name}: skipped, {UNIGRADICON_WEIGHTS_ENV}={path} is not a file"
        return None

    def map_points(self, case) -> np.ndarray:  # pragma: no cover - needs the real weights
        import icon_registration.itk_wrapper
        import itk
        import unigradicon

        from ..data.image_io import write_volume

        net = unigradicon.get_unigradicon(weights_location=str(self.weights_path()))
        with tempfile.TemporaryDirectory(prefix="meddift-unigradicon-") as tmp:
            images = []
            for name, vol in (("fixed", case.fixed), ("moving", case.moving)):
                path = write_volume(Volume(vol.array.astype(np.float32), vol.ijk_to_ras), Path(tmp) / f"{name}.mha")
                images.append(unigradicon.preprocess(itk.imread(str(path), itk.F), modality="ct"))
        # register_pair(net, A=moving, B=fixed) returns phi_AB, the resampling transform (fixed -> moving points)
        phi_ab, _ = icon_registration.itk_wrapper.register_pair(net, images[1], images[0], finetune_steps=None)
        lps = flip_lps_ras(case.fixed_points.points)
        return flip_lps_ras([phi_ab.TransformPoint(tuple(float(c) for c in p)) for p in lps])


METHODS: dict[str, type[Method]] = {
    "identity": Identity,
    "meddift": MedDIFTMethod,
    "meddift-dense": MedDIFTDense,
    "meddift-dense-argmax": MedDIFTDenseArgmax,
    "sitk-bspline": SimpleITKBSpline,
    "elastix": ElastixBSpline,
    "ants-syn": AntsSyN,
    "convexadam": ConvexAdam,
    "unigradicon": UniGradICON,
}
"""Command-line names of the methods (``meddift evaluate --methods``)."""


def resolve_methods(spec: str, log=print) -> list[Method]:
    """``"all"`` (every method that can run here; the others are logged as skipped) or a comma list.

    A method named explicitly that cannot run is an error, not a silent skip.
    """
    names = [m.strip() for m in spec.split(",") if m.strip()]
    if names == ["all"]:
        out = []
        for _name, factory in METHODS.items():
            reason = getattr(factory, "unavailable_reason", lambda: None)()
            if reason:
                log(reason)
            else:
                out.append(factory())
        return out
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        raise InputError(f"unknown methods {unknown}; available: all, {', '.join(METHODS)}")
    for name in names:
        reason = METHODS[name].unavailable_reason()
        if reason:
            raise InputError(reason.replace(": skipped, ", ": cannot run, "))
    return [METHODS[m]() for m in names]
