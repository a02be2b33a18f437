"""ssnet: benchmark and reproduction suite for SSNet (MICCAI 2025), MVO segmentation from cine CMR."""
from __future__ import annotations

__version__ = "0.1.0"
