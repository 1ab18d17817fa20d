"""Vocabularies shared by the build and the trainer: garment classes, colour names, body-shape words."""
