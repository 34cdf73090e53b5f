"""Split settings: base (shared), local (the embedded one-machine default), production, test."""
