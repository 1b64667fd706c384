"""`python -m mollify info`."""

import subprocess
import sys

import numpy
import pytest
import torch

import mollify
from mollify.__main__ import main


def test_info_reports_versions_and_devices():
    out = subprocess.run(
        [sys.executable, "-m", "mollify", "info"], capture_output=True, text=True, check=True
    ).stdout
    assert f"mollify     {mollify.__version__}" in out
    assert f"torch       {torch.__version__}" in out
    assert f"numpy       {numpy.__version__}" in out
    assert "ipywidgets" in out and "devices:" in out and "cuda" in out


def test_unknown_command_fails_cleanly(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["frobnicate"])
    assert exit.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
