"""Annotate and filter generated variants: body-shape scores (CLIP3DReID) and the identity gate."""
