"""Task models built from our own architecture definitions (tfjs-graph weights and others)."""
