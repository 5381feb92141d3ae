"""The feature cache: SlowFast RoI vectors in a Zarr store, the memory bank, pretraining.

Submodules are imported directly (``avapipe.features.store``, ``.memory``,
``.backbone``, ``.extract``, ``.pretrain``) so that reading the store or the
memory index does not import the video backbone.
"""
