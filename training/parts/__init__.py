"""The parts methods are assembled from: heads, losses, views, masks, momentum, ViT token helpers.

Each part is small and tested on its own against a plain reference computation, so a method file only
has to wire them together the way its paper does (lightly's design).
"""
