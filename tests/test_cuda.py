"""The GPU path: the same code on CUDA agrees with the CPU. Skipped without a GPU."""

import numpy as np
import pytest
import torch
from openmmlab_checkpoints import DETECTOR_CONFIG, decoded_keyframes, random_detector_checkpoint
from test_extract import arrays_of, inputs, reference, run  # noqa: F401  (module fixtures)
from test_train import make_task, train

from avapipe.models.predict import load_classifier
from avapipe.perception.detect import detect_keyframes, load_detector

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_features_on_cuda_match_the_cpu_store(inputs, reference, tmp_path):  # noqa: F811
    path = tmp_path / "cuda.zarr"
    run(inputs, path, device="cuda", dtype="float32")
    cpu, _ = arrays_of(reference[0])
    gpu, _ = arrays_of(path)
    for name in ("persons", "parts", "objects"):
        np.testing.assert_allclose(gpu[name], cpu[name].astype(np.float32), rtol=2e-2, atol=2e-2)
    np.testing.assert_array_equal(gpu["part_valid"], cpu["part_valid"])


def test_training_on_cuda_with_amp_gives_a_checkpoint_the_cpu_loads(tmp_path):
    task = make_task(tmp_path / "task")
    result = train(task, tmp_path / "work", device="cuda", epochs=2)
    assert np.isfinite(result.curves["train_loss"]).all()
    model = load_classifier(result.last_checkpoint)
    assert next(model.parameters()).device.type == "cpu"


def test_detector_on_cuda_gives_the_cpu_boxes(tmp_path):
    checkpoint = str(random_detector_checkpoint(tmp_path / "det.pth"))
    images = decoded_keyframes(tmp_path)
    rules = dict(score_thr=0.0, batch_size=2, object_topk=3,
                 object_score_thr=0.0, progress=False)
    tables = [detect_keyframes(detector=load_detector(config=DETECTOR_CONFIG,
                                                      checkpoint=checkpoint, device=device),
                               images=images, **rules)[0] for device in ("cpu", "cuda")]
    assert len(tables[0]) == len(tables[1])
    np.testing.assert_allclose(tables[1][["x1", "y1", "x2", "y2"]].to_numpy(),
                               tables[0][["x1", "y1", "x2", "y2"]].to_numpy(), atol=1e-2)
