"""The pipeline's stages, one module each: ``run_<stage>(...)`` returns a result object.

teacher (finetune --base) -> distill -> prune -> finetune (recovery) -> infer / bench / report;
validate checks everything before a GPU is rented. The CLI (:mod:`nerkd.cli`) renders the results.
"""
