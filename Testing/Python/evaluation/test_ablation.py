"""Ablations: the variant grid, honest labels without weights, shared features and encodings, the command."""

from __future__ import annotations

import numpy as np
import pytest

from MedDIFTLib.errors import InputError
from MedDIFTLib.evaluation.ablation import ablation_methods, ablation_variants


def test_without_weights_maisi_groups_are_not_run_and_every_maisi_row_is_a_labelled_control():
    variants, skipped = ablation_variants(maisi_weights=False)
    names = [v.name for v in variants]
    assert not any(v.engine.backbone == "maisi" and not v.engine.random_init for v in variants)
    assert [v.name for v in variants if v.engine.backbone == "maisi"] == ["backbone: MAISI random-init (control)"]
    assert any(s.startswith("timestep (MAISI): not run, no MAISI weights") for s in skipped)
    assert "backbone: MAISI (pretrained) not run, no MAISI weights" in skipped
    assert [n for n in names if n.startswith("levels")] == [
        "levels: mind2 [MIND-SSC]",
        "levels: mind4 [MIND-SSC]",
        "levels: mind2+mind4 [MIND-SSC]",
    ]
    assert [n for n in names if n.startswith("radius")] == [
        f"radius: {r} [MIND-SSC: no MAISI weights]" for r in ("global", "10 mm", "20 mm", "40 mm")
    ]


def test_random_control_runs_the_maisi_grid_with_the_label_on_every_row():
    variants, _ = ablation_variants(("levels", "timestep", "ensemble", "latent"), random_control=True)
    maisi = [v for v in variants if v.engine.backbone == "maisi"]
    assert len(maisi) == 11 + 6 + 3 + 2  # 4 alone + 6 pairs + all; 6 timesteps; 3 ensembles; 2 latents
    assert all(v.engine.random_init and v.name.endswith("[MAISI random-init control]") for v in maisi)
    assert sorted(v.engine.timestep for v in maisi if v.group == "timestep") == [0, 10, 20, 50, 100, 200]
    assert [v.match.levels for v in maisi if v.group == "levels"][-1] == ["up0", "up1", "up2", "up3"]


def test_with_weights_the_reference_is_the_pretrained_model():
    variants, skipped = ablation_variants(("timestep", "backbone"), maisi_weights=True)
    assert not skipped
    assert all(not v.engine.random_init for v in variants if v.group == "timestep")
    assert [v.label for v in variants if v.group == "backbone"] == [
        "MAISI (pretrained)",
        "MIND-SSC (weight-free)",
        "MAISI random-init (control)",
    ]
    with pytest.raises(InputError, match=r"unknown ablation groups \['noise'\]"):
        ablation_variants(("noise",))


def test_variants_share_features_and_the_vae_encoding(monkeypatch):
    """Tiny random-init MAISI: the level and timestep variants of one volume encode it once, level
    variants reuse the same pyramid, and a level variant equals matching with that level directly."""
    from MedDIFTLib.evaluation.cases import phantom_suite
    from MedDIFTLib.features.maisi.backbone import MaisiBackbone
    from MedDIFTLib.matching.search import MatchOptions
    from MedDIFTLib.session import EngineOptions, MatchSession, SharedCaches
    from tiny_maisi import TINY_CONFIG

    shared = SharedCaches()  # what ablation_methods' own factory shares between its sessions

    def session_factory(eng):
        s = MatchSession(EngineOptions(backbone="mind-ssc", use_cache=False), MatchOptions(), shared)
        s.backbone = MaisiBackbone(
            device="cpu",
            config=TINY_CONFIG,
            random_init=True,
            timestep=eng.timestep,
            ensemble=eng.ensemble,
            latent=eng.latent,
            encodings=shared.encodings,
        )
        return s

    encodes = []
    real = MaisiBackbone._encode

    def counting(self, vae, prep, volume):
        before = len(self.encodings)
        out = real(self, vae, prep, volume)
        encodes.append(len(self.encodings) > before)
        return out

    monkeypatch.setattr(MaisiBackbone, "_encode", counting)
    variants, _ = ablation_variants(("levels", "timestep"), random_control=True)
    variants = [v for v in variants if v.engine.backbone == "maisi"][:5] + [
        v for v in variants if v.group == "timestep"
    ][:3]  # up0, up1, up2, up3, up0+up1; t=0, 10, 20
    methods = ablation_methods(variants, session_factory)
    assert len({id(m.session._pyramids) for m in methods}) == 3  # t=20 (levels and t=20 share), t=0, t=10
    (case,) = phantom_suite(seeds=(1,), amplitudes=(20.0,), n_landmarks=4, shape=(48, 48, 48), spacing=(6.0,) * 3)
    out = [m.map_points(case) for m in methods]
    assert sum(encodes) == 2  # fixed and moving, once each, for all eight variants
    direct = session_factory(variants[0].engine).with_matching(MatchOptions(levels=["up0"], radius_mm=25.0))
    np.testing.assert_allclose(
        out[0], direct.match(case.fixed, case.moving, case.fixed_points, prior=lambda p: p).points.points
    )
    assert not np.allclose(out[0], out[3])  # up0 alone and up3 alone disagree somewhere
    methods[0].end_case()
    assert not methods[1].session._pyramids  # forgotten for every variant sharing them


def test_ablate_command_writes_a_report(tmp_path, monkeypatch, capsys):
    from MedDIFTLib.cli import main

    monkeypatch.setenv("MEDDIFT_WEIGHTS_DIR", str(tmp_path / "no-weights"))
    rc = main(
        [
            "ablate",
            "--groups",
            "radius,refinement",
            "--amplitudes",
            "20",
            "--landmarks",
            "5",
            "--no-hard-cases",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert rc == 0
    text = (tmp_path / "out" / "report.md").read_text()
    assert text.startswith("# MedDIFT ablations")
    assert "No MAISI weights here" in text
    for row in ("radius: global [MIND-SSC: no MAISI weights]", "refinement: off (coarse lattice argmax)"):
        assert f"| {row}" in text
    assert "(1 cases;" in text  # --seeds defaults to 0 for ablations: one case per amplitude
