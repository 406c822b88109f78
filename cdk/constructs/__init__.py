"""Reusable building blocks ("model with constructs"); stacks compose them and do the grants."""
