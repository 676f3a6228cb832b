"""The phi model library, below the stages: architecture, tokenizers, checkpoints, generation, HF interop,
training logs. The ``lm`` stages train with it and ``evals`` measures with it; neither imports the other.
"""
