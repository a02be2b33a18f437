"""Training engine: Hydra config composition, the Lightning module, run folders, prediction."""
