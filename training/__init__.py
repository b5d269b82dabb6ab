"""Training recipes for recall's backends: `python -m training lte` (LoRA alignment, LTE §2).

`training` imports `recall` and `memory_store`; nothing imports `training`.
"""
