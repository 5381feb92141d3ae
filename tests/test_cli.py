import json

from click.testing import CliRunner

from stages.cli import STAGES, main

LABEL_MAP = 'item {\n  name: "stand"\n  id: 1\n}\nitem {\n  name: "wave"\n  id: 2\n}\n'
GT = "vidAAAAAAAA,0902,0.1,0.1,0.5,0.9,1,0\nvidAAAAAAAA,0902,0.1,0.1,0.5,0.9,2,0\n"
# class 1: one TP → AP 1. class 2: an FP above the TP → precision 1/2 at recall 1 → AP 0.5.
DETECTIONS = (
    "vidAAAAAAAA,0902,0.1,0.1,0.5,0.9,1,0.9\n"
    "vidAAAAAAAA,0902,0.6,0.1,0.9,0.9,2,0.8\n"
    "vidAAAAAAAA,0902,0.1,0.1,0.5,0.9,2,0.7\n"
)


def test_help_lists_the_commands():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in ("extract", "eval", "ensemble", "doctor", "train", "evaluate"):
        assert command in result.output
    result = CliRunner().invoke(main, ["extract", "--help"])
    flat = "".join(result.output.split())
    assert all(stage in flat for stage in STAGES)


def test_eval_prints_and_writes_json(tmp_path):
    files = {"l.pbtxt": LABEL_MAP, "g.csv": GT, "d.csv": DETECTIONS}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    out = tmp_path / "m.json"
    result = CliRunner().invoke(main, [
        "eval", "--labelmap", str(tmp_path / "l.pbtxt"), "--groundtruth", str(tmp_path / "g.csv"),
        "--detections", str(tmp_path / "d.csv"), "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["mAP"] == 0.75
    assert report["per_class"] == {"1": 1.0, "2": 0.5}
    assert "frame-mAP@0.5: 0.750000" in result.output


def test_ensemble_averages_two_files(tmp_path):
    (tmp_path / "a.csv").write_text("vidAAAAAAAA,0902,0.1,0.1,0.5,0.9,1,0.9\n")
    (tmp_path / "b.csv").write_text("vidAAAAAAAA,0902,0.1,0.1,0.5,0.9,1,0.5\n")
    result = CliRunner().invoke(main, [
        "ensemble", str(tmp_path / "a.csv"), str(tmp_path / "b.csv"),
        "-o", str(tmp_path / "out.csv"), "--weights", "3,1"])
    assert result.exit_code == 0, result.output
    line = (tmp_path / "out.csv").read_text().strip()
    assert float(line.split(",")[-1]) == 0.8


def test_eval_ignores_foreign_keyframes_and_reads_official_spellings(tmp_path):
    # The detections again, at 902.0 and 0902.0000001 (the GT's keyframe 0902),
    # plus a 0.95 FP of each class on a keyframe the GT does not have: ignored.
    spelled = DETECTIONS.replace(",0902,", ",902.0,", 2).replace(",0902,", ",0902.0000001,")
    foreign = ("vidBBBBBBBB,0902,0.1,0.1,0.5,0.9,1,0.95\n"
               "vidBBBBBBBB,0902,0.1,0.1,0.5,0.9,2,0.95\n")
    files = {"l.pbtxt": LABEL_MAP, "g.csv": GT, "d.csv": foreign + spelled}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    result = CliRunner().invoke(main, [
        "eval", "--labelmap", str(tmp_path / "l.pbtxt"), "--groundtruth", str(tmp_path / "g.csv"),
        "--detections", str(tmp_path / "d.csv")])
    assert result.exit_code == 0, result.output
    assert "frame-mAP@0.5: 0.750000" in result.output


def test_ensemble_writes_the_top_k_rows_of_label_map_classes(tmp_path):
    # Three rows per file on one keyframe; class 3 is not in the label map.
    (tmp_path / "a.csv").write_text("vidAAAAAAAA,0902,0.1,0.1,0.5,0.9,1,0.9\n"
                                    "vidAAAAAAAA,0902,0.1,0.1,0.5,0.9,2,0.4\n"
                                    "vidAAAAAAAA,0902,0.1,0.1,0.5,0.9,3,0.99\n")
    (tmp_path / "l.pbtxt").write_text(LABEL_MAP)
    out = tmp_path / "out.csv"
    args = ["ensemble", str(tmp_path / "a.csv"), "-o", str(out)]
    assert CliRunner().invoke(main, args + ["--top-k", "2"]).exit_code == 0
    assert [line.split(",")[6] for line in out.read_text().splitlines()] == ["1", "3"]
    result = CliRunner().invoke(main, args + ["--top-k", "1", "--labelmap",
                                              str(tmp_path / "l.pbtxt")])
    assert result.exit_code == 0, result.output
    assert out.read_text() == "vidAAAAAAAA,0902,0.100,0.100,0.500,0.900,1,0.9\n"
    assert CliRunner().invoke(main, args + ["--top-k", "-1"]).exit_code != 0


def test_unknown_stage_is_refused():
    result = CliRunner().invoke(main, ["extract", "nope"])
    assert result.exit_code != 0 and "nope" in result.output
