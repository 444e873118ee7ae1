"""Generator backends, one file each; every module here registers itself on import."""
