import pytest
import torch

from avapipe.features.backbone import (
    PIXEL_MEAN, PIXEL_STD, ClipSpec, FeatureExtractor, boxes_to_rois, build_slowfast,
    clips_to_pathways, enlarge_rois, pool_rois,
)

torch.set_num_threads(1)


def narrow(seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    return build_slowfast(width_divisor=4, num_classes=5, **kwargs)


def test_narrow_maps_have_stride_16_and_documented_widths():
    extractor = FeatureExtractor(narrow()).eval()
    slow, fast = torch.zeros(2, 3, 2, 64, 96), torch.zeros(2, 3, 8, 64, 96)
    with torch.inference_mode():
        maps = extractor(slow, fast)
    # res4 and the dilated res5 both at 1/16 of the 64×96 input; widths ÷4 of R50.
    assert [tuple(m.shape) for m in maps.res4] == [(2, 256, 2, 4, 6), (2, 32, 8, 4, 6)]
    assert [tuple(m.shape) for m in maps.res5] == [(2, 512, 2, 4, 6), (2, 64, 8, 4, 6)]
    assert (extractor.person_channels, extractor.part_channels) == (576, 288)


def test_standard_r50_pools_2304_person_and_1152_part_channels():
    torch.manual_seed(0)
    extractor = FeatureExtractor(build_slowfast(num_classes=80)).eval()
    with torch.inference_mode():
        maps = extractor(torch.zeros(1, 3, 1, 32, 32), torch.zeros(1, 3, 4, 32, 32))
        rois = boxes_to_rois(torch.tensor([[0.1, 0.1, 0.9, 0.9]]), torch.tensor([0]), height=32, width=32)
        person, part = pool_rois(maps.res5, rois), pool_rois(maps.res4, rois)
    assert maps.res5[0].shape[-2:] == (2, 2)
    assert person.shape == (1, 2304) and part.shape == (1, 1152)
    assert (extractor.person_channels, extractor.part_channels) == (2304, 1152)


def two_region_maps():
    """Slow map 16×16: channel 0 is 1|5 (left|right half) in frame 0 and 3|7 in
    frame 1, so its temporal mean is 2|6; the fast map's one channel is 10."""
    slow = torch.zeros(2, 1, 2, 16, 16)
    slow[:, 0, 0, :, :8], slow[:, 0, 0, :, 8:] = 1.0, 5.0
    slow[:, 0, 1, :, :8], slow[:, 0, 1, :, 8:] = 3.0, 7.0
    slow[1] += 100.0  # second clip
    fast = torch.full((2, 1, 4, 16, 16), 10.0)
    return slow, fast


def test_pool_rois_is_temporal_mean_then_spatial_max_of_slow_and_fast():
    maps = two_region_maps()
    boxes = torch.tensor([[0.05, 0.1, 0.3, 0.9],  # inside the left half of a 256×256 input
                          [0.2, 0.2, 0.8, 0.8],  # spans both halves: max is the right
                          [0.05, 0.1, 0.3, 0.9]])
    rois = boxes_to_rois(boxes, torch.tensor([0, 0, 1]), height=256, width=256)
    pooled = pool_rois(maps, rois)
    expected = torch.tensor([[2.0, 10.0], [6.0, 10.0], [102.0, 10.0]])
    assert torch.allclose(pooled, expected, atol=1e-5)


def test_pool_rois_of_no_boxes_is_empty():
    assert pool_rois(two_region_maps(), torch.zeros(0, 5)).shape == (0, 2)


def test_boxes_to_rois_scales_normalized_boxes_to_input_pixels():
    rois = boxes_to_rois(torch.tensor([[0.25, 0.5, 0.75, 1.0]]), torch.tensor([3]), height=64, width=96)
    assert rois.tolist() == [[3.0, 24.0, 32.0, 72.0, 64.0]]


def test_clips_to_pathways_normalizes_and_spreads_slow_frames():
    clips = torch.arange(8, dtype=torch.uint8).mul(30).view(1, 8, 1, 1, 1).expand(1, 8, 2, 2, 3).contiguous()
    slow, fast = clips_to_pathways(clips, alpha=4)
    assert slow.shape == (1, 3, 2, 2, 2) and fast.shape == (1, 3, 8, 2, 2)
    expected = [(v / 255.0 - PIXEL_MEAN[0]) / PIXEL_STD[0] for v in (0, 210)]  # frames 0 and 7
    assert torch.allclose(slow[0, 0, :, 0, 0], torch.tensor(expected))


def test_clips_must_be_uint8_bthwc():
    with pytest.raises(ValueError, match="uint8"):
        clips_to_pathways(torch.zeros(1, 8, 4, 4, 3), alpha=4)


def test_clip_spec_requires_frames_multiple_of_alpha():
    with pytest.raises(ValueError, match="multiple of alpha"):
        ClipSpec(num_frames=6, alpha=4)


def test_enlarge_rois_as_alphaction_extends_boxes():
    rois = torch.tensor([[0, 10.0, 20.0, 29.0, 59.0], [1, 2.0, 70.0, 97.0, 79.0]])
    out = enlarge_rois(rois, enlarge=(0.1, 0.05), height=80, width=100)
    # box 0: w + 1 = 20 → 1 px each side in x; h + 1 = 40 → 1 px each side in y
    # box 1: pads 4.8 and 0.25 → x1 = -2.8 and y2 = 79.25 clip to 0 and height - 1
    torch.testing.assert_close(out, torch.tensor([[0, 9.0, 19.0, 30.0, 60.0],
                                                  [1, 0.0, 69.75, 99.0, 79.0]]))
    assert enlarge_rois(rois, enlarge=(0.0, 0.0), height=80, width=100) is rois
    with pytest.raises(ValueError, match="enlarge"):
        enlarge_rois(rois, enlarge=(-0.1, 0.0), height=80, width=100)
