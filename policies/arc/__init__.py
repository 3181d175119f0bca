"""Few-shot learning on ARC (SEAL section 4.1): self-edits that choose their own augmentations and
training settings.

grids (codec, tasks) -> transforms (SEAL's invertible augmentation families) -> ttt (leave-one-out
tasks, a config's training set, test-time training through the inner loop) -> inference (views,
inverse, vote, pass@2, partial credit, gold log-prob); self_edit (the JSON config the model writes,
parsed and validated); settings (run sizes); rest_em (ReST-EM over configs).
"""
