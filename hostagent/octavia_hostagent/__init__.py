"""octavia-hostagent: plumbs o-hm0 on a node."""
__version__ = "0.1.0"
