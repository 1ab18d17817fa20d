"""Annotation: body-shape scores of the source images (CLIP3DReID) and the identity gate over generated variants."""
