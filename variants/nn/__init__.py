"""Shared building blocks: ViT, predictor, masks, EMA, probes."""
