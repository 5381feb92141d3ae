"""Two label spaces: the classes a classifier is trained on, and the classes scored.

AVA v2.2's ``ava_train_v2.2.csv`` / ``ava_val_v2.2.csv`` carry all 80 action
ids of AVA's full action list; the 2019 label map
(``ava_action_list_v2.2_for_activitynet_2019.pbtxt``) lists the 60 of them
that the official evaluation scores. AlphAction, PySlowFast
(``MODEL.NUM_CLASSES: 80``) and mmaction2 (``num_classes=81``: the 80 plus
background) train on the 80 and score the 60. A GT row whose action id lies
in neither space is a bad row.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

AVA_ACTION_IDS = range(1, 81)  # AVA v2.2's full action list


@dataclass(frozen=True)
class LabelSpaces:
    """trained: {action id: name} the classifier outputs, sorted by id;
    evaluated: {action id: name} of the label map, the classes scored."""

    trained: dict[int, str]
    evaluated: dict[int, str]

    def describe(self, *, train_source: str, evaluated_source: str) -> str:
        """One line for a stage's output: both spaces, their sizes and origins."""
        return (f"{len(self.trained)} classes trained ({train_source}), "
                f"{len(self.evaluated)} evaluated ({evaluated_source}); "
                f"{len(set(self.trained) - set(self.evaluated))} trained but not scored")


def known_action_ids(*, train_label_map: Mapping[int, str] | None,
                     evaluated: Mapping[int, str]) -> frozenset[int]:
    """Ids a GT row may carry: the training space (the given training label map,
    or AVA's 80 ids) plus the evaluated label map."""
    space = AVA_ACTION_IDS if train_label_map is None else train_label_map
    return frozenset(int(a) for a in space) | frozenset(int(a) for a in evaluated)


def label_spaces(*, train_action_ids: Iterable[int], train_label_map: Mapping[int, str] | None,
                 evaluated: Mapping[int, str]) -> LabelSpaces:
    """The trained classes: every action id of the training CSV in the training
    space (``known_action_ids``), plus every evaluated class so the classifier
    scores all of them. Names come from the evaluated map, then the training
    map, else ``action <id>``.

    train_action_ids: the action_id column of the training GT (any order, repeats).
    """
    known = known_action_ids(train_label_map=train_label_map, evaluated=evaluated)
    ids = ({int(a) for a in train_action_ids} & known) | {int(a) for a in evaluated}
    names = {**(train_label_map or {}), **evaluated}
    trained = {a: names.get(a, f"action {a}") for a in sorted(ids)}
    return LabelSpaces(trained=trained, evaluated=dict(sorted(evaluated.items())))
