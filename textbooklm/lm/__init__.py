"""The model area: tokenizer, token packing, the phi model, training, HF export/import, generation."""
