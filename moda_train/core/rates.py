"""Frame and audio rates of the data contract: every clip, shard, model window and generated video uses them."""

FPS = 25
"""Video frames per second (MoDA's rate)."""
SAMPLE_RATE = 16000
"""Audio samples per second (mono)."""
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS
"""Audio samples per video frame (640): the alignment of audio features to frames depends on it."""
