"""Independent references, one per recipe, written from the official code's facts (docs/recipes.md).

None of these modules imports ``umr``: each builds its prompts, resizes its images and runs the
transformers model the way the model's own code does (model card usage, the authors' repository, the
qwen-vl-utils version that code uses), so that a test comparing ``umr`` with a reference checks ``umr``
against the published recipe and not against itself.
"""
