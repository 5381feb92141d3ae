import numpy as np
import pytest

from avapipe.data.synthetic_scene import (
    FOREARM,
    SHIN,
    SHOULDER_HALF,
    SHOULDER_UP,
    THIGH,
    UPPER_ARM,
    CameraNoise,
    Shape,
    arm_angles_to,
    background,
    body_keypoints,
    draw_figure,
    face_visibility,
    object_shape,
    paint,
    shapes_box,
)

STANDING = np.array([0.0, 0.12, 0.05, -0.12, -0.05, 0.04, 0.02, -0.04, -0.02])
COLORS = ((40, 170, 70), (40, 50, 120), (230, 190, 160))
MARK = (255, 255, 255)


def mask_box(mask: np.ndarray) -> np.ndarray:
    """Pixel extent [x1, y1, x2, y2] of a mask, counting whole pixels."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=float)


def test_disc_and_quad_fill_the_pixels_whose_centres_they_cover():
    canvas = np.zeros((10, 10, 1), np.uint8)
    paint(canvas, [Shape("disc", np.array([[5.0, 5.0]]), 2.0, (1,))])
    # centres at offsets (+-0.5, +-0.5) and the 8 at (+-0.5, +-1.5) / (+-1.5, +-0.5)
    assert canvas.sum() == 12
    canvas[:] = 0
    rect = np.array([[2.0, 3.0], [6.0, 3.0], [6.0, 5.0], [2.0, 5.0]])
    paint(canvas, [Shape("quad", rect, 0.0, (1,))])
    assert canvas[..., 0].sum() == 8 and canvas[3:5, 2:6].all()


def test_capsule_covers_segment_and_rounded_ends():
    canvas = np.zeros((9, 12, 1), np.uint8)
    paint(canvas, [Shape("capsule", np.array([[3.0, 4.5], [8.0, 4.5]]), 1.0, (1,))])
    row = canvas[4, :, 0]
    assert row[2:9].all() and not row[1] and not row[9]  # centres 2.5 .. 8.5 lie within 1 px
    # one row up, centres are 1 px off the line: only those beside the segment (x 3..8) count
    assert canvas[3, :, 0].tolist() == [0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0]
    assert not canvas[2].any()


@pytest.mark.parametrize("facing", [-1, 0, 1])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_figure_box_encloses_exactly_the_drawn_pixels(facing, seed):
    angles = STANDING + np.random.default_rng(seed).uniform(-1.2, 1.2, size=9)
    figure = draw_figure(angles, facing=facing, hip_x=60.3, ground_y=90.7, height=70.0, colors=COLORS)
    canvas = np.zeros((120, 120, 3), np.uint8)
    paint(canvas, [Shape(s.kind, s.points, s.radius, MARK) for s in figure.shapes])
    drawn = mask_box(canvas.any(axis=2))
    box = shapes_box(figure.shapes)
    assert np.all(drawn[:2] >= box[:2] - 0.5) and np.all(drawn[2:] <= box[2:] + 0.5)  # box encloses
    np.testing.assert_allclose(drawn, box, atol=1.5)  # and is tight


@pytest.mark.parametrize("facing", [-1, 0, 1])
def test_every_keypoint_lies_on_a_drawn_pixel(facing):
    rng = np.random.default_rng(4)
    backdrop = background(height=110, width=140, floor_y=100.0, rng=rng)
    angles = STANDING.copy()
    angles[[1, 2]] = arm_angles_to((0.24, 0.12), 1)
    figure = draw_figure(angles, facing=facing, hip_x=70.0, ground_y=100.0, height=80.0, colors=COLORS)
    canvas = backdrop.copy()
    paint(canvas, figure.shapes)
    for x, y in figure.keypoints:
        before, after = backdrop[int(y), int(x)], canvas[int(y), int(x)]
        assert np.abs(after - before).max() > 20, (x, y)


def test_body_keeps_limb_lengths_and_stands_on_the_floor():
    points, head = body_keypoints(STANDING, facing=0)
    assert points[:, 1].min() == pytest.approx(0.0)
    for (a, b), length in {(5, 7): UPPER_ARM, (7, 9): FOREARM, (11, 13): THIGH, (13, 15): SHIN}.items():
        assert np.hypot(*(points[a] - points[b])) == pytest.approx(length)
    assert head[1] > points[5, 1] > points[11, 1] > points[13, 1]  # head above shoulders above hips above knees


def test_tilting_a_quarter_turn_lays_the_body_down_head_first_to_the_left():
    lying = STANDING.copy()
    lying[0] = np.pi / 2
    points, head = body_keypoints(lying, facing=1)
    hips = points[[11, 12]].mean(axis=0)
    assert head[0] < hips[0] - 0.4 and abs(head[1] - hips[1]) < 0.01
    assert points[:, 1].min() == pytest.approx(0.0)


@pytest.mark.parametrize(("target", "side"), [((0.24, 0.12), 1), ((-0.06, 0.40), -1), ((0.34, 0.15), 1)])
def test_arm_reaches_its_target(target, side):
    upper, fore = arm_angles_to(target, side)
    shoulder = np.array([side * SHOULDER_HALF, SHOULDER_UP])
    elbow = shoulder + UPPER_ARM * np.array([np.sin(upper), -np.cos(upper)])
    wrist = elbow + FOREARM * np.array([np.sin(fore), -np.cos(fore)])
    np.testing.assert_allclose(wrist, target, atol=1e-6)


def test_out_of_reach_target_gets_a_straight_arm_towards_it():
    upper, fore = arm_angles_to((0.1, -0.5), 1)  # straight below the shoulder, too far
    assert upper == pytest.approx(0.0, abs=0.01) and fore == pytest.approx(0.0, abs=0.01)


def test_profile_hides_the_far_eye_and_ear():
    assert face_visibility(1)[[1, 2, 3, 4]].tolist() == [1, 2, 1, 2]
    assert face_visibility(-1)[[1, 2, 3, 4]].tolist() == [2, 1, 2, 1]
    assert (face_visibility(0) == 2).all()


def test_objects_have_their_own_shapes_and_sizes():
    ball = object_shape("ball", center=(20.0, 30.0), height=100.0)
    phone = object_shape("phone", center=(20.0, 30.0), height=100.0)
    tv = object_shape("tv", center=(50.0, 30.0), height=100.0)
    np.testing.assert_allclose(shapes_box([ball]), [12, 22, 28, 38])
    np.testing.assert_allclose(shapes_box([phone]), [16.5, 22.5, 23.5, 37.5])
    np.testing.assert_allclose(shapes_box([tv]), [25, 13, 75, 47])
    assert len({ball.color, phone.color, tv.color}) == 3


def test_camera_noise_is_reproducible_and_noisy():
    image = np.full((16, 20, 3), 100.0, np.float32)
    first = CameraNoise(image.shape, rng=np.random.default_rng(7))
    again = CameraNoise(image.shape, rng=np.random.default_rng(7))
    frames = [first(image) for _ in range(3)]
    assert all(np.array_equal(a, again(image)) for a in frames)
    assert frames[0].dtype == np.uint8 and 1.5 < frames[0].std() < 6
    assert not np.array_equal(frames[0], frames[1])
