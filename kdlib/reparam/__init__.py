"""Structural re-parameterization: ACB blocks for training, fused plain convs for deployment."""
