"""Frozen MindSpore CLIP text tower, CLIP BPE tokenizer, and torch-free reading of PyTorch checkpoints."""
