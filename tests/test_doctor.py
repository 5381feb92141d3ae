from click.testing import CliRunner

from avapipe.doctor import run_checks
from stages.cli import main


def test_every_required_piece_is_installed_with_mmcv_ops():
    checks = {c.name: c for c in run_checks()}
    missing = [f"{c.name}: {c.detail}" for c in checks.values() if c.required and not c.ok]
    assert not missing
    assert checks["mmcv.ops"].detail == "RoIAlign, nms loaded"
    assert checks["mmcv"].detail == "2.1.0"


def test_doctor_command_prints_versions_and_exits_zero():
    result = CliRunner().invoke(main, ["doctor"])
    assert result.exit_code == 0, result.output
    assert "mmcv.ops" in result.output and "torch" in result.output
