"""One file per method, each assembled from the shared parts and registered by name."""
