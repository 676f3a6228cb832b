"""Ablation: train one model preset on several data recipes at an equal token budget and compare."""
