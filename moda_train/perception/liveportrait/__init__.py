"""LivePortrait's renderer networks (appearance features, warping with dense motion and occlusion, SPADE generator,
stitching and retargeting MLPs) under the names of its released weights. The motion extractor lives with the
other motion backends (`moda_train.perception.motion.liveportrait`)."""

from .networks import RELEASED_FILES, RendererNetworks, RendererSizes, stitch

__all__ = ["RELEASED_FILES", "RendererNetworks", "RendererSizes", "stitch"]
