from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from avapipe.provenance import ProvenanceError, read_record, write_folder_record
from stages.params import Params
from stages.records import STAGE_PARAMS, ParamsChangedError, check_unchanged, checked_inputs

REPO = Path(__file__).resolve().parents[1]


def test_each_stage_records_the_params_dvc_yaml_gives_it():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert {name: tuple(spec.get("params", ())) for name, spec in stages.items()} == STAGE_PARAMS


def test_a_record_holds_the_stage_params_and_those_of_its_inputs(tmp_path):
    params = Params()
    (tmp_path / "store").mkdir()
    write_folder_record(tmp_path / "store", checked_inputs("features", params, []))
    record = checked_inputs("memory", params, [tmp_path / "store"])
    assert record["stage"] == "memory"
    assert set(record["params"]) == {"backbone", "features", "memory"}
    assert record["params"]["features"]["enlarge"] == [0.0, 0.0]  # JSON values


def test_an_input_made_with_other_params_is_refused_naming_both_values(tmp_path):
    made = tmp_path / "classifier"
    made.mkdir()
    write_folder_record(made, checked_inputs("train", replace(Params(), fusion="cube"), []))
    with pytest.raises(ProvenanceError, match=rf"{made} was made by the train stage with "
                                              r"fusion='cube', but params.yaml has fusion='none'"
                                              r".*avapipe extract train"):
        checked_inputs("evaluate", Params(), [made])


def test_an_input_without_a_record_is_read_with_a_note(tmp_path, capsys):
    (tmp_path / "old").mkdir()
    record = checked_inputs("evaluate", Params(), [tmp_path / "old", tmp_path / "absent"])
    assert set(record["params"]) == {"evaluate"}
    assert capsys.readouterr().out.count("carries no record") == 1
    assert read_record(tmp_path / "old") is None


def test_params_changed_while_a_stage_ran_are_named():
    other_stage = replace(Params(), evaluate=replace(Params().evaluate, top_k=5))
    check_unchanged("train", Params(), other_stage)  # not train's params: no error
    with pytest.raises(ParamsChangedError, match=r"seed was 0 when it started and is 1 now"
                                                 r".*dvc exp run --queue"):
        check_unchanged("train", Params(), replace(Params(), seed=1))
