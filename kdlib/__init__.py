"""kdlib: knowledge distillation and re-parameterization, driven by params.yaml."""
