import re

import numpy as np
import pytest

from avapipe.data.synthetic_script import WALK_SPEED, plan_dataset, plan_video

SIZE = {"seconds": 24, "width": 170, "height": 128}


@pytest.fixture(scope="module")
def videos():
    return plan_dataset(seed=5, num_train_videos=8, num_val_videos=4, **SIZE)


def test_same_seed_same_scripts_and_another_seed_differs(videos):
    assert plan_dataset(seed=5, num_train_videos=8, num_val_videos=4, **SIZE) == videos
    assert plan_dataset(seed=6, num_train_videos=8, num_val_videos=4, **SIZE) != videos


def test_video_ids_look_like_ava_ids_and_are_unique(videos):
    ids = [v.video_id for v in videos]
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{11}", i) for i in ids)
    assert len(set(ids)) == len(ids)
    assert [v.split for v in videos] == ["train"] * 8 + ["val"] * 4


def test_every_person_has_one_beat_per_second_and_moves_continuously(videos):
    for video in videos:
        assert 1 <= len(video.persons) <= 3
        assert [o.kind == "tv" for o in video.objects] == [False] * len(video.persons) + [True] * (
            len(video.objects) - len(video.persons)) and len(video.objects) <= len(video.persons) + 1
        for person in video.persons:
            assert len(person.beats) == SIZE["seconds"]
            starts = np.array([b.x_from for b in person.beats])
            ends = np.array([b.x_to for b in person.beats])
            np.testing.assert_allclose(starts[1:], ends[:-1])
            assert np.all(np.abs(ends - starts) <= video.width / 3 + 1e-9)  # meeting walks are the fastest
            assert np.all((starts > 0.6 * person.height) & (starts < video.width - 0.6 * person.height))


def test_walking_beats_move_and_others_stand_still(videos):
    for person in (p for v in videos for p in v.persons):
        for beat in person.beats:
            moved = beat.x_to - beat.x_from
            if beat.base == "walk":
                assert moved != 0 and np.sign(moved) == beat.facing
            else:
                assert moved == 0


def test_objects_are_picked_up_and_put_down_where_they_rest(videos):
    for video in videos:
        for i, person in enumerate(video.persons):
            for beat in person.beats:
                if beat.held is not None:
                    assert beat.held == i and beat.x_from == beat.x_to == video.objects[i].rest_x


def test_first_video_of_each_split_has_a_meeting_with_a_hand_shake(videos):
    for first in (videos[0], videos[8]):
        reaching = [[b.arm == "reach" for b in p.beats] for p in first.persons[:2]]
        assert any(reaching[0]) and reaching[0] == reaching[1]


def test_in_a_meeting_one_talks_while_the_other_listens(videos):
    for first in (videos[0], videos[8]):
        gesturing = np.array([[b.arm == "gesture" for b in p.beats] for p in first.persons[:2]])
        both_reach = [a.arm == b.arm == "reach" for a, b in zip(*(p.beats for p in first.persons[:2]))]
        meeting = slice(both_reach.index(True) - 7, both_reach.index(True))  # talk 2-3, back 2-3, pause
        assert gesturing[0, meeting].any() and gesturing[1, meeting].any()
        assert not (gesturing[0, meeting] & gesturing[1, meeting]).any()


def test_video_roles_give_televisions_and_people_alone_who_fall(videos):
    second, third, fifth = videos[1], videos[2], videos[4]
    tv = second.objects[-1]
    assert tv.kind == "tv" and len(tv.screen) == SIZE["seconds"] and 0 < sum(tv.screen) < len(tv.screen)
    assert tv.ground_y < second.floor_y - second.persons[0].height  # above every head
    assert len(third.persons) == 1 and len(fifth.persons) == 1  # two in five are alone
    for video in videos:
        if len(video.persons) > 1:  # only people alone in their video fall
            assert all(b.base != "lie" for p in video.persons for b in p.beats)


def test_required_episodes_are_taken_from_the_list():
    required = ["fall", "kick"]
    video = plan_video(np.random.default_rng(0), split="train", seconds=20, width=170, height=128,
                       required=required, meet=False, alone=True)
    beats = [b for p in video.persons for b in p.beats]
    assert required == []
    assert any(b.base == "lie" for b in beats) and any(b.leg == "kick" for b in beats)


def test_solo_walks_keep_to_walking_speed():
    video = plan_video(np.random.default_rng(3), split="train", seconds=30, width=170, height=128,
                       required=["walk"], meet=False)
    for person in video.persons:
        steps = [abs(b.x_to - b.x_from) for b in person.beats if b.base == "walk"]
        assert steps and max(steps) <= WALK_SPEED * person.height + 1e-9


def test_too_small_frames_and_videos_are_rejected():
    with pytest.raises(ValueError, match="too narrow"):
        plan_dataset(seed=0, num_train_videos=1, num_val_videos=0, seconds=10, width=60, height=128)
    with pytest.raises(ValueError, match="seconds"):
        plan_dataset(seed=0, num_train_videos=1, num_val_videos=0, seconds=4, width=170, height=128)
