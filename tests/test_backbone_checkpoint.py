"""SlowFast checkpoints of pytorchvideo and PySlowFast into avapipe's backbone."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pytorchvideo.models.hub import slowfast_r50, slowfast_r50_detection

from avapipe.features.backbone import FeatureExtractor, build_slowfast
from avapipe.features.backbone_checkpoint import CheckpointError, load_backbone_checkpoint

torch.set_num_threads(1)
DATA = Path(__file__).parent / "data"


def narrow(seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    return build_slowfast(width_divisor=4, num_classes=5, **kwargs)


def test_checkpoint_round_trip_loads_backbone_and_skips_unfitting_head(tmp_path):
    source = narrow(seed=1)
    torch.save({"model_state": source.state_dict(), "epoch": 3}, tmp_path / "a.pyth")
    target = narrow(seed=2, dropout=0.0)
    target.blocks[6] = build_slowfast(width_divisor=4, num_classes=7).blocks[6]  # other head
    ignored = load_backbone_checkpoint(target, tmp_path / "a.pyth")
    assert sorted(ignored) == ["blocks.6.proj.bias", "blocks.6.proj.weight"]
    theirs, ours = source.state_dict(), target.state_dict()
    assert all(torch.equal(theirs[k], ours[k]) for k in ours if not k.startswith("blocks.6."))


def test_checkpoint_with_other_widths_is_refused_naming_the_key(tmp_path):
    torch.save(build_slowfast(width_divisor=2).state_dict(), tmp_path / "wide.pt")
    with pytest.raises(CheckpointError, match=r"blocks\.0\.multipathway_blocks\.0\.conv\.weight has shape"):
        load_backbone_checkpoint(narrow(), tmp_path / "wide.pt")


def test_checkpoint_of_other_depth_is_refused(tmp_path):
    torch.save({"model_state": narrow().state_dict()}, tmp_path / "r50.pt")
    with pytest.raises(CheckpointError, match=r"[1-9]\d* unexpected"):
        load_backbone_checkpoint(build_slowfast(depth=18, width_divisor=4), tmp_path / "r50.pt")


def test_missing_checkpoint_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pyth"):
        load_backbone_checkpoint(narrow(), tmp_path / "nope.pyth")


def test_pytorchvideo_kinetics_and_ava_checkpoints_fit_the_dilated_r50(tmp_path):
    torch.manual_seed(0)
    kinetics, ava = slowfast_r50(pretrained=False), slowfast_r50_detection(pretrained=False)
    torch.save({"model_state": kinetics.state_dict()}, tmp_path / "k400.pyth")
    torch.save({"model_state": ava.state_dict()}, tmp_path / "ava.pyth")
    model = build_slowfast(num_classes=400)
    assert load_backbone_checkpoint(model, tmp_path / "k400.pyth") == []
    key = "blocks.4.multipathway_blocks.0.res_blocks.2.branch2.conv_b.weight"
    assert torch.equal(model.state_dict()[key], kinetics.state_dict()[key])
    ignored = load_backbone_checkpoint(model, tmp_path / "ava.pyth")
    assert ignored and all(k.startswith("detection_head.") for k in ignored)
    assert torch.equal(model.state_dict()[key], ava.state_dict()["model." + key])


def pyslowfast_checkpoint(path: Path) -> Path:
    """A checkpoint as PySlowFast's ``save_checkpoint`` writes it, in the key
    layout of its own SlowFast R50 (AVA config, WIDTH_PER_GROUP=16), weights
    from numpy seeds in state-dict order (as the fixture's were made)."""
    layout = json.loads(str(np.load(DATA / "pyslowfast_slowfast_r50_w16.npz")["layout"]))
    state = {}
    for i, (key, shape, dtype) in enumerate(layout):
        rng = np.random.default_rng(i)
        if dtype != "float32":
            state[key] = torch.zeros(shape, dtype=getattr(torch, dtype))
        elif key.endswith("running_var"):
            state[key] = torch.from_numpy(rng.uniform(0.5, 1.5, shape).astype(np.float32))
        else:
            state[key] = torch.from_numpy((rng.standard_normal(shape) * 0.2).astype(np.float32))
    sgd = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9)
    torch.save({"epoch": 20, "model_state": state, "optimizer_state": sgd.state_dict(),
                "cfg": "MODEL:\n  ARCH: slowfast\n  NUM_CLASSES: 80\n"}, path)
    return path


def test_pyslowfast_checkpoint_is_renamed_and_gives_pyslowfasts_own_res5_maps(tmp_path):
    """The fixture's res5 maps were computed by PySlowFast's SlowFast itself
    (facebookresearch/SlowFast, s1..s5) from these weights and this clip."""
    expected = np.load(DATA / "pyslowfast_slowfast_r50_w16.npz")
    model = build_slowfast(width_divisor=4, num_classes=80)
    ignored = load_backbone_checkpoint(model, pyslowfast_checkpoint(tmp_path / "checkpoint_epoch_00020.pyth"))
    assert sorted(ignored) == ["head.projection.bias", "head.projection.weight"]  # features never use it
    fast = torch.from_numpy(np.random.default_rng(1234).standard_normal((1, 3, 8, 32, 32)).astype(np.float32))
    with torch.inference_mode():
        maps = FeatureExtractor(model).eval()(fast[:, :, [0, 7]], fast)
    for ours, theirs in zip(maps.res5, (expected["slow"], expected["fast"])):
        np.testing.assert_allclose(ours.numpy(), theirs, rtol=1e-4, atol=1e-5)


def test_pyslowfast_checkpoint_of_another_width_names_its_convention(tmp_path):
    path = pyslowfast_checkpoint(tmp_path / "pyslowfast.pyth")
    with pytest.raises(CheckpointError, match=r"pyslowfast\.pyth.*has shape.*PySlowFast's names"):
        load_backbone_checkpoint(build_slowfast(width_divisor=2), path)


def test_mmaction2_and_unknown_checkpoints_are_refused_naming_what_was_found(tmp_path):
    torch.save({"state_dict": {"backbone.slow_path.conv1.conv.weight": torch.zeros(1)}},
               tmp_path / "mmaction.pth")
    with pytest.raises(CheckpointError, match=r"mmaction\.pth.*mmaction2's ResNet3dSlowFast names"):
        load_backbone_checkpoint(narrow(), tmp_path / "mmaction.pth")
    torch.save({"state_dict": {"encoder.layer1.weight": torch.zeros(1)}}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match=r"other\.pth.*no known convention.*encoder\.layer1"):
        load_backbone_checkpoint(narrow(), tmp_path / "other.pth")
