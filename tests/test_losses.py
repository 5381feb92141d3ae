import math

import pytest
import torch
import torch.nn.functional as F

from avapipe.models.losses import (action_loss, class_probabilities, head_loss,
                                   sigmoid_focal_loss, softmax_focal_loss)

POSE = torch.tensor([True, True, True, False, False])


def test_softmax_focal_by_hand():
    logits = torch.tensor([[0.0, math.log(3.0)]])  # p = [1/4, 3/4]
    loss = softmax_focal_loss(logits=logits, target=torch.tensor([0]), gamma=2.0)
    assert torch.allclose(loss, torch.tensor([(0.75 ** 2) * math.log(4.0)]))


def test_sigmoid_focal_by_hand():
    logits = torch.tensor([[0.0, math.log(3.0)]])  # p = [1/2, 3/4]
    targets = torch.tensor([[1.0, 0.0]])
    loss = sigmoid_focal_loss(logits=logits, targets=targets, gamma=2.0)
    expected = torch.tensor([[0.25 * math.log(2.0), 0.75 ** 2 * math.log(4.0)]])
    assert torch.allclose(loss, expected)


def test_gamma_zero_is_cross_entropy_and_bce():
    torch.manual_seed(0)
    logits, target = torch.randn(6, 4), torch.randint(0, 4, (6,))
    softmax = softmax_focal_loss(logits=logits, target=target, gamma=0.0)
    assert torch.allclose(softmax, F.cross_entropy(logits, target, reduction="none"))
    targets = (torch.rand(6, 4) > 0.5).float()
    sigmoid = sigmoid_focal_loss(logits=logits, targets=targets, gamma=0.0)
    expected = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    assert torch.allclose(sigmoid, expected)


def test_focal_term_shrinks_the_loss_of_easy_examples_most():
    logits = torch.tensor([[4.0, 0.0], [0.2, 0.0]])
    target = torch.tensor([0, 0])
    plain = softmax_focal_loss(logits=logits, target=target, gamma=0.0)
    focal = softmax_focal_loss(logits=logits, target=target, gamma=2.0)
    ratio = focal / plain
    assert (ratio < 1).all() and ratio[0] < ratio[1]


def test_action_loss_at_gamma_zero_matches_torch_and_skips_unlabelled_poses():
    torch.manual_seed(1)
    logits = torch.randn(4, 5, requires_grad=True)
    targets = torch.tensor([[0, 1, 0, 1, 0], [1, 0, 0, 0, 0], [0, 0, 0, 1, 1],
                            [0, 0, 1, 0, 1]], dtype=torch.float)
    loss = action_loss(logits=logits, targets=targets, pose_classes=POSE, gamma=0.0)
    labelled = torch.tensor([0, 1, 3])  # row 2 has no pose label
    pose = 1.2 * F.cross_entropy(logits[labelled][:, :3], torch.tensor([1, 0, 2]),
                                 reduction="sum") / 4
    other = F.binary_cross_entropy_with_logits(logits[:, 3:], targets[:, 3:],
                                               reduction="sum") / 4
    assert torch.allclose(loss.pose, pose) and torch.allclose(loss.other, other)
    assert torch.allclose(loss.total, pose + other)
    loss.total.backward()
    assert torch.equal(logits.grad[2, :3], torch.zeros(3))
    assert not logits.grad.isnan().any()


def test_two_person_hand_case_is_weighted_pose_plus_summed_sigmoid():
    # p = softmax over the pose columns, s = sigmoid elsewhere, both chosen by hand.
    logits = torch.tensor([[0.0, math.log(3.0), -math.inf, 0.0, math.log(3.0)],
                           [math.log(3.0), 0.0, -math.inf, -math.log(3.0), 0.0]])
    targets = torch.tensor([[0, 1, 0, 1, 0], [0, 1, 0, 0, 1]], dtype=torch.float)
    loss = action_loss(logits=logits, targets=targets, pose_classes=POSE, gamma=2.0)
    # Pose: person 0 has p = 3/4 on its class, person 1 p = 1/4.
    pose = (0.25 ** 2 * math.log(4 / 3) + 0.75 ** 2 * math.log(4)) * 1.2 / 2
    # Other: person 0: s = 1/2 positive, s = 3/4 negative; person 1: s = 1/4 negative,
    # s = 1/2 positive. Summed over the classes, divided by the 2 persons.
    other = (0.25 * math.log(2) + 0.75 ** 2 * math.log(4)
             + 0.25 ** 2 * math.log(4 / 3) + 0.25 * math.log(2)) / 2
    assert loss.pose.item() == pytest.approx(pose, rel=1e-6)
    assert loss.other.item() == pytest.approx(other, rel=1e-6)
    assert loss.total.item() == pytest.approx(pose + other, rel=1e-6)


def test_certain_prediction_at_gamma_zero_has_finite_gradient():
    logits = torch.tensor([[200.0, -200.0, -200.0, 50.0, -50.0]], requires_grad=True)
    targets = torch.tensor([[1.0, 0, 0, 1, 0]])
    for gamma in (0.0, 2.0):
        loss = action_loss(logits=logits, targets=targets, pose_classes=POSE, gamma=gamma)
        (grad,) = torch.autograd.grad(loss.total, logits)
        assert torch.isfinite(grad).all()


def test_empty_batch_and_no_pose_labels_give_zero():
    logits = torch.zeros(0, 5, requires_grad=True)
    loss = action_loss(logits=logits, targets=torch.zeros(0, 5), pose_classes=POSE, gamma=2.0)
    assert loss.total.item() == 0.0
    loss.total.backward()
    unlabelled = action_loss(logits=torch.randn(2, 5), targets=torch.zeros(2, 5),
                             pose_classes=POSE, gamma=2.0)
    assert unlabelled.pose.item() == 0.0 and unlabelled.other.item() > 0


def test_bad_targets_name_the_row():
    targets = torch.zeros(3, 5)
    targets[2, :2] = 1
    with pytest.raises(ValueError, match="row 2 has 2 pose labels"):
        action_loss(logits=torch.zeros(3, 5), targets=targets, pose_classes=POSE, gamma=2.0)
    targets = torch.zeros(3, 5)
    targets[1, 4] = 0.5
    with pytest.raises(ValueError, match=r"targets\[1, 4\]"):
        action_loss(logits=torch.zeros(3, 5), targets=targets, pose_classes=POSE, gamma=2.0)
    with pytest.raises(ValueError, match="gamma"):
        action_loss(logits=torch.zeros(3, 5), targets=torch.zeros(3, 5), pose_classes=POSE,
                    gamma=-1.0)
    with pytest.raises(ValueError, match="bool mask"):
        action_loss(logits=torch.zeros(3, 5), targets=torch.zeros(3, 5),
                    pose_classes=POSE.long(), gamma=1.0)


def test_head_loss_sums_heads_over_real_persons_only():
    torch.manual_seed(2)
    fused, global_ = torch.randn(2, 3, 5), torch.randn(2, 3, 5)
    targets = torch.zeros(2, 3, 5)
    targets[..., 0] = 1
    targets[0, 1, 4] = 1
    mask = torch.tensor([[True, True, False], [True, False, False]])
    targets[1, 2, :2] = 1  # an invalid target on a padded slot is never read
    loss = head_loss(logits=[fused, global_], targets=targets, person_mask=mask,
                     pose_classes=POSE, gamma=1.0)
    parts = [action_loss(logits=head[mask], targets=targets[mask], pose_classes=POSE,
                         gamma=1.0) for head in (fused, global_)]
    assert torch.allclose(loss.total, parts[0].total + parts[1].total)


def test_class_probabilities_softmax_over_poses_sigmoid_elsewhere():
    logits = torch.tensor([[0.0, math.log(3.0), -100.0, 0.0, math.log(3.0)]])
    probabilities = class_probabilities(logits=logits, pose_classes=POSE)
    assert torch.allclose(probabilities, torch.tensor([[0.25, 0.75, 0.0, 0.5, 0.75]]))
