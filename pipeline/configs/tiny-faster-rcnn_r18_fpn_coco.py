# A narrow Faster R-CNN for tests and the CPU demo: the structure of mmdet's
# faster-rcnn_r50_fpn_1x_coco (80 COCO classes, RoIAlign, FPN) with a
# ResNet-18 at a quarter of the usual width and a 320x192 input. Weights
# come from a checkpoint; nothing is fetched at build time (init_cfg=None).
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'

model = dict(
    backbone=dict(depth=18, base_channels=16, init_cfg=None),
    neck=dict(in_channels=[16, 32, 64, 128], out_channels=32),
    rpn_head=dict(in_channels=32, feat_channels=32),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=32),
        bbox_head=dict(in_channels=32, fc_out_channels=64)),
    # Scores are thresholded by avapipe's detect stage, not here. With every
    # score kept, NMS class by class (split_thr=0) is far cheaper than one
    # NMS over all 80 classes' boxes at once.
    test_cfg=dict(
        rpn=dict(nms_pre=200, max_per_img=100),
        rcnn=dict(
            score_thr=0.0,
            nms=dict(type='nms', iou_threshold=0.5, split_thr=0),
            max_per_img=50)))

test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(320, 192), keep_ratio=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor')),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
