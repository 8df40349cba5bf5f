"""Pure-numpy motion-space metrics shared by evaluation during training (`moda_train.lit.eval_callback`) and the
evaluation job (`evaluation/`): one copy of each formula."""
