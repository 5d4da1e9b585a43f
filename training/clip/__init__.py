"""CLIP-specific training helpers: caption tables, model builders and the locked-tower fast path."""
