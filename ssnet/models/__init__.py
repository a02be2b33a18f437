"""Models of the suite itself (SSNet). Baselines live in the top-level ``baselines`` package."""
