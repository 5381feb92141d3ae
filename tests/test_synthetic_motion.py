import numpy as np
import pytest

from avapipe.data.synthetic_motion import (
    BLEND_SECONDS,
    Beat,
    Person,
    SceneObject,
    beat_at,
    person_figure,
    posture_angles,
    render_frame,
    scene_shapes,
)
from avapipe.data.synthetic_scene import OBJECT_COLORS, OBJECT_SIZES, CameraNoise, body_keypoints, shapes_box

COLORS = ((40, 170, 70), (40, 50, 120), (230, 190, 160))
HEIGHT = 60.0


def person(*beats: Beat) -> Person:
    return Person(beats=beats, height=HEIGHT, ground_y=90.0, colors=COLORS)


def test_beat_k_covers_the_second_around_k():
    p = person(*[Beat(x_from=50, x_to=50)] * 4)
    assert beat_at(p, 2.0) == (2, 0.5)
    assert beat_at(p, 1.5) == (2, 0.0)
    assert beat_at(p, 1.49)[0] == 1
    assert beat_at(p, -3.0)[0] == 0 and beat_at(p, 9.0)[0] == 3


def test_keyframes_show_the_pure_posture_and_boundaries_are_continuous():
    p = person(Beat(x_from=50, x_to=50), Beat("sit", 50, 50, facing=1), Beat(x_from=50, x_to=50))
    expected, _ = body_keypoints(posture_angles(p.beats[1], 1.0), facing=1)
    got = (person_figure(p, 1.0).keypoints - [50.0, 90.0]) * [1, -1] / HEIGHT
    np.testing.assert_allclose(got, expected, atol=1e-9)
    before, after = person_figure(p, 0.5 - 1e-6), person_figure(p, 0.5 + 1e-6)
    # the body is continuous; the face (keypoints 0-4) turns at once, from the camera to +x
    np.testing.assert_allclose(before.keypoints[5:], after.keypoints[5:], atol=1e-3)
    halfway = person_figure(p, 0.5 + BLEND_SECONDS / 2).keypoints
    stand, sit = person_figure(p, 0.0).keypoints, person_figure(p, 1.0).keypoints
    assert stand[11, 1] < halfway[11, 1] < sit[11, 1]  # hips on their way down


def test_walking_moves_the_hips_linearly_within_the_beat():
    p = person(Beat("walk", 40.0, 70.0, facing=1))
    hips = [person_figure(p, t).keypoints[11:13, 0].mean() for t in (-0.5, 0.0, 0.25)]
    np.testing.assert_allclose(hips, [40.0, 55.0, 62.5])


def moving_joints(beat: Beat) -> set[int]:
    p = person(beat)
    frames = np.stack([person_figure(p, t).keypoints for t in np.linspace(-0.3, 0.3, 13)])
    return set(np.flatnonzero(np.ptp(frames, axis=0).max(axis=1) > 0.02 * HEIGHT).tolist())


def test_only_the_waving_forearm_moves():
    assert moving_joints(Beat(x_from=50, x_to=50, facing=1, arm="wave")) == {9}  # left wrist
    assert moving_joints(Beat(x_from=50, x_to=50, facing=-1, arm="wave")) == {10}
    assert moving_joints(Beat(x_from=50, x_to=50, facing=1, arm="raise")) == set()


def test_only_the_gesturing_forearm_moves_and_stays_below_the_shoulder():
    assert moving_joints(Beat(x_from=50, x_to=50, facing=-1, arm="gesture")) == {10}  # right wrist
    p = person(Beat(x_from=50, x_to=50, facing=1, arm="gesture"))
    wrists = np.array([person_figure(p, t).keypoints[9] for t in np.linspace(0, 0.5, 7)])
    shoulder = person_figure(p, 0.0).keypoints[5]
    assert (wrists[:, 1] > shoulder[1]).all() and (wrists[:, 0] > shoulder[0]).all()  # in front, below


def test_a_television_shows_a_changing_picture_only_while_on():
    tv = SceneObject("tv", rest_x=60.0, ground_y=30.0, height=HEIGHT, screen=(False, True, True))
    colors = [scene_shapes((), (tv,), t)[1][0].color for t in (0.0, 0.3, 1.0, 1.2, 2.0)]
    assert colors[0] == colors[1] == OBJECT_COLORS["tv"]  # off: the dark screen
    assert len({colors[2], colors[3], colors[4]}) == 3 and min(colors[2]) > 60
    assert tv.is_on(1.0) and not tv.is_on(0.49) and tv.is_on(7.0)  # after the end: the last second
    assert not SceneObject("ball", rest_x=1.0, ground_y=1.0, height=HEIGHT).is_on(0.0)


def test_only_one_leg_moves_in_a_kick():
    # the whole body may bob as the floor contact changes, so look at the leg
    # joints relative to the hips
    p = person(Beat(x_from=50, x_to=50, facing=-1, leg="kick"))
    frames = np.stack([person_figure(p, t).keypoints for t in np.linspace(-0.3, 0.3, 13)])
    relative = frames - frames[:, [12]]
    spread = np.ptp(relative, axis=0).max(axis=1)
    assert spread[[14, 16]].min() > 0.05 * HEIGHT  # right knee and ankle swing
    assert spread[[13, 15]].max() < 1e-9 and spread[:11].max() < 1e-9


def test_held_object_is_drawn_in_the_facing_hand_and_rests_on_the_floor_otherwise():
    cup = SceneObject("cup", rest_x=30.0, ground_y=90.0, height=HEIGHT)
    holder = person(Beat(x_from=80, x_to=80, facing=-1, arm="head", held=0))
    figures, shapes = scene_shapes((holder,), (cup,), 0.0)
    np.testing.assert_allclose(shapes[0].points.mean(axis=0), figures[0].keypoints[10])
    idle = person(Beat(x_from=80, x_to=80, facing=-1, arm="head"))
    _, shapes = scene_shapes((idle,), (cup,), 0.0)
    width, tall = OBJECT_SIZES["cup"]
    np.testing.assert_allclose(shapes_box(shapes), [30 - width * 30, 90 - tall * 60, 30 + width * 30, 90])


@pytest.mark.parametrize(
    ("fields", "message"),
    [({"base": "fly"}, "base"), ({"arm": "rest", "held": 0}, "held|holds"), ({"facing": 2}, "facing")],
)
def test_bad_beats_are_rejected(fields, message):
    with pytest.raises(ValueError, match=message):
        Beat(**fields)


def test_render_frame_draws_people_and_objects_over_the_backdrop():
    backdrop = np.full((100, 120, 3), 128.0, np.float32)
    p = person(Beat(x_from=60, x_to=60))
    ball = SceneObject("ball", rest_x=100.0, ground_y=90.0, height=HEIGHT)
    frame = render_frame(backdrop, (p,), (ball,), 0.0, noise=CameraNoise(backdrop.shape, rng=np.random.default_rng(0)))
    assert frame.shape == (100, 120, 3) and frame.dtype == np.uint8
    assert abs(int(frame[50, 60, 1]) - 170) < 15  # the green shirt at mid-torso
    assert abs(int(frame[87, 100, 0]) - 225) < 15  # the red ball on the floor
    assert abs(int(frame[10, 10, 0]) - 128) < 15
