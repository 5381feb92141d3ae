# A narrow top-down heatmap pose model (SimpleBaseline) for tests and the CPU
# demo: the structure of mmpose's td-hm_res50_8xb64-210e_coco-256x192 (17
# COCO keypoints) with a ResNet-18 at a quarter of the usual width, 96x128
# crops and no flip test. Weights come from a checkpoint (init_cfg=None).
_base_ = 'mmpose::body_2d_keypoint/topdown_heatmap/coco/td-hm_res50_8xb64-210e_coco-256x192.py'

codec = dict(
    type='MSRAHeatmap', input_size=(96, 128), heatmap_size=(24, 32), sigma=1)

model = dict(
    backbone=dict(depth=18, stem_channels=16, base_channels=16, init_cfg=None),
    head=dict(
        in_channels=128,
        deconv_out_channels=(32, 32, 32),
        decoder=codec),
    test_cfg=dict(flip_test=False))

val_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale'),
    dict(type='TopdownAffine', input_size=codec['input_size']),
    dict(type='PackPoseInputs'),
]
val_dataloader = dict(dataset=dict(pipeline=val_pipeline))
test_dataloader = val_dataloader
