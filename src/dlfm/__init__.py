"""dlfm: deep latent factor models for collaborative filtering."""

__version__ = "0.1.0"
