"""What the audio pipelines share: the extractor check and one input → the extractor's tensors."""

from __future__ import annotations

from ..processing.audio import Audio, load_audio


def check_extractor(pipeline) -> None:
    if pipeline.feature_extractor is None:
        raise ValueError(f"The {pipeline.task} pipeline needs a feature extractor: the checkpoint has no "
                         f"preprocessor_config.json naming one; pass `feature_extractor=`.")


def read_input(pipeline, inputs) -> Audio:
    """Any accepted audio input → mono float32 at the extractor's sampling rate."""
    return load_audio(inputs, pipeline.feature_extractor.sampling_rate)
