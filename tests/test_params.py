from pathlib import Path

import pytest

from stages.params import Params, ParamsError, check_choice, load_params


def test_repository_params_load():
    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    assert isinstance(params, Params)
    assert params.fusion in ("none", "serial", "dense", "parallel", "cube")


def test_missing_sections_take_defaults(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("fusion: cube\ndetect:\n  score_thr: 1\n")
    params = load_params(path)
    assert params.fusion == "cube"
    assert params.detect.score_thr == 1.0 and isinstance(params.detect.score_thr, float)
    assert params.pose == Params().pose


def test_unknown_key_lists_the_valid_ones(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("detect:\n  scor_thr: 0.5\n")
    with pytest.raises(ParamsError, match=r"detect: unknown key\(s\) \['scor_thr'\].*score_thr"):
        load_params(path)


def test_unknown_section_and_wrong_type(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("detcet: {}\n")
    with pytest.raises(ParamsError, match="unknown key.*detcet"):
        load_params(path)
    path.write_text("pose_part: 'yes'\n")
    with pytest.raises(ParamsError, match="pose_part: expected bool"):
        load_params(path)
    path.write_text("seed: true\n")
    with pytest.raises(ParamsError, match="seed: expected int"):
        load_params(path)


def test_params_are_frozen():
    with pytest.raises(Exception):
        Params().fusion = "cube"


def test_check_choice():
    assert check_choice("gt", ("gt", "mmdet"), key="detect.source") == "gt"
    with pytest.raises(ParamsError, match=r"detect.source='x' is not one of \['gt', 'mmdet'\]"):
        check_choice("x", ("gt", "mmdet"), key="detect.source")


def test_evaluate_section_defaults_to_the_official_50_rows(tmp_path):
    assert Params().evaluate.top_k == 50
    path = tmp_path / "params.yaml"
    path.write_text("evaluate:\n  top_k: 0\n")
    assert load_params(path).evaluate.top_k == 0
    path.write_text("evaluate:\n  topk: 5\n")
    with pytest.raises(ParamsError, match=r"evaluate: unknown key\(s\) \['topk'\].*top_k"):
        load_params(path)
