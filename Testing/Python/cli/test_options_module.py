"""The options module: typed options and choices that import without torch (the Slicer side has none
in its own process), round-trip through the dicts every client sends, and refuse unknown keys."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from MedDIFTLib.errors import InputError
from MedDIFTLib.options import (
    BACKBONE_NAMES,
    EngineOptions,
    MatchOptions,
    PriorKind,
    RegistrationOptions,
    UnknownOptionsError,
)

REPO = Path(__file__).resolve().parents[3]


def test_options_import_and_work_with_torch_and_numpy_unimportable():
    code = textwrap.dedent("""
        import sys
        sys.modules["torch"] = None  # any `import torch` now raises ImportError
        sys.modules["numpy"] = None
        from MedDIFTLib.options import EngineOptions, MatchOptions, RegistrationOptions, BackboneName
        e = EngineOptions.from_dict({"backbone": "mind-ssc", "levels": ["mind2"]})
        assert e.backbone == BackboneName.MIND_SSC and e.to_dict()["levels"] == ["mind2"]
        assert MatchOptions.from_dict({"radius_mm": 0}).radius_mm is None  # 0: a global search
        assert RegistrationOptions.from_dict({"prealign": "affine"}).prealign == "affine"
        try:
            MatchOptions(radius_mm=-1)
        except ValueError as err:
            assert "search radius" in str(err)
        else:
            raise AssertionError("a negative radius was accepted")
        print("ok", "torch" in sys.modules and sys.modules["torch"] is not None)
    """)
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ok", "False"]


@pytest.mark.parametrize(
    "cls, d",
    [
        # the dicts the Slicer module and older clients send today (MedDIFT.py engineOptions, the worker tests)
        (EngineOptions, {"backbone": "auto", "device": "cpu", "timestep": 20, "levels": None, "weights_dir": None}),
        (MatchOptions, {"radius_mm": 25.0}),
        (RegistrationOptions, {"search_mm": 12.0, "lam": 0.3, "prealign": "none", "iterations": 10}),
    ],
)
def test_the_dicts_clients_send_round_trip(cls, d):
    opts = cls.from_dict(d)
    back = opts.to_dict()
    assert {k: back[k] for k in d} == d
    assert cls.from_dict(back) == opts


@pytest.mark.parametrize(
    "cls, words",
    [
        (EngineOptions, "unknown engine options ['hu_offset']"),
        (MatchOptions, "unknown matching options ['hu_offset']"),
        (RegistrationOptions, "unknown registration options ['hu_offset']"),
    ],
)
def test_unknown_keys_are_refused_in_words_naming_the_known_ones(cls, words):
    with pytest.raises(UnknownOptionsError) as err:
        cls.from_dict({"hu_offset": -1024})
    assert words in str(err.value) and "known: [" in str(err.value)
    assert isinstance(err.value, InputError)
    with pytest.raises(InputError, match="must be an object of named values"):
        cls.from_dict(["backbone"])


def test_choices_are_the_strings_of_the_command_line():
    assert BACKBONE_NAMES == ("auto", "maisi", "mind-ssc")
    assert [str(k) for k in PriorKind] == ["identity", "coarse", "dense", "none"]
    assert f"{PriorKind.DENSE}" == "dense" and PriorKind.DENSE == "dense"
