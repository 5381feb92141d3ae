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


def test_the_fusion_optimizer_and_padding_names_are_the_library_ones():
    from avapipe.models.head import FUSIONS
    from avapipe.models.sources import PADDINGS
    from avapipe.models.train import OPTIMIZERS
    from avapipe.models.blocks import MEMORY_READERS
    from avapipe.models.pose_part import PART_POOLINGS
    from stages.params import (FUSION_NAMES, MEMORY_READER_NAMES, OPTIMIZER_NAMES, PADDING_NAMES,
                               PART_POOLING_NAMES)

    assert tuple(FUSIONS) == FUSION_NAMES and tuple(OPTIMIZERS) == OPTIMIZER_NAMES
    assert PADDINGS == PADDING_NAMES
    assert PART_POOLINGS == PART_POOLING_NAMES
    assert tuple(MEMORY_READERS) == MEMORY_READER_NAMES


@pytest.mark.parametrize("text, message", [
    ("fusion: foo", r"fusion='foo' is not one of \['cube', 'dense', 'none', 'parallel', 'serial'\]"),
    ("train: {hidden: 0}", r"train\.hidden=0; must be >= 1"),
    ("train: {lr: -0.1}", r"train\.lr=-0\.1; must be > 0"),
    ("train: {dropout: 2}", r"train\.dropout=2\.0; must lie in \[0, 1\)"),
    ("train: {optimizer: adam}", r"train\.optimizer='adam' is not one of \['adamw', 'sgd'\]"),
    ("train: {padding: zeros}", r"train\.padding='zeros' is not one of \['attend', 'mask'\]"),
    ("train: {memory_reader: lstm}",
     r"train\.memory_reader='lstm' is not one of \['attention', 'spans'\]"),
    ("detect: {jitter: -0.1}", r"detect\.jitter=-0\.1; must lie in \[0, 1\)"),
    ("data: {convention: youtube}", r"data\.convention='youtube'; the built-in data .* only 'auto'"),
    ("data: {source: ava, root: /x, convention: youtube}",
     r"data\.convention='youtube' is not one of \['auto', 'ava', 'kinetics', 'seconds'\]"),
    ("data: {source: ava}", r"data\.root=''; data\.source='ava' needs the folder"),
    ("synthetic: {train_videos: 0}", r"synthetic\.train_videos=0; must be >= 1"),
    ("synthetic: {seconds: 3}", r"synthetic\.seconds=3; must be >= 5"),
    ("synthetic: {width: 161}", r"synthetic\.width=161; must be even"),
    ("synthetic: {width: 100, height: 100}", r"synthetic\.width=100; must be >= 1\.2 × synthetic\.height=100"),
    ("detect: {source: mmdet}", r"detect\.config=''; a source is mmdet, which needs detect\.config"),
    ("pose: {source: mmpose, config: c}", r"pose\.checkpoint=''; pose\.source=mmpose needs"),
    ("backbone: {num_frames: 6}", r"backbone\.num_frames=6; must be a positive multiple of backbone\.alpha=4"),
    ("features: {enlarge: [0.1]}", r"features\.enlarge=\(0\.1,\); must be two numbers >= 0"),
    ("features: {dtype: bfloat16}", r"features\.dtype='bfloat16' is not one of \['float16', 'float32'\]"),
    ("memory: {per_second: 0}", r"memory\.per_second=0; must be >= 1"),
    ("evaluate: {top_k: -1}", r"evaluate\.top_k=-1; use the number of result rows"),
    ("device: tpu", r"device='tpu' is not one of \['cpu', 'cuda'\]"),
])
def test_a_value_out_of_range_is_refused_when_params_are_read(tmp_path, text, message):
    path = tmp_path / "params.yaml"
    path.write_text(text + "\n")
    with pytest.raises(ParamsError, match=r"params\.yaml: " + message):
        load_params(path)
