"""automatic-speech-recognition: speech → text, with CTC heads (Wav2Vec2, HuBERT) or seq2seq (Whisper).

>>> transcriber = pipeline("automatic-speech-recognition", model="facebook/wav2vec2-base-960h")
>>> transcriber("sample.flac")
{'text': 'HE HOPED THERE WOULD BE STEW FOR DINNER'}

Long inputs: `chunk_length_s` cuts overlapping windows (`stride_length_s` each side, default a sixth
of the chunk) that are batched like any input; CTC keeps each window's centre, Whisper merges the
windows' token sequences. Which decoding runs is the model's head ("ctc" or "speech-seq2seq").
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch

from .audio import check_extractor, read_input
from .base import ChunkPipeline


def rescale_stride(stride: tuple[int, int, int], ratio: float) -> tuple[int, int, int]:
    """(samples, left, right) in input samples → the same in frames, rounded as transformers does."""
    total, left, right = stride
    frames = int(round(total * ratio))
    return frames, int(round(left / total * frames)), int(round(right / total * frames))


def chunk_windows(length: int, chunk: int, left: int, right: int):
    """(start, end, stride) of each window: `chunk` samples, stepping by chunk - left - right."""
    step = chunk - left - right
    for start in range(0, length, step):
        end = start + chunk
        is_last = end >= length
        size = min(end, length) - start
        stride = (size, 0 if start == 0 else left, 0 if is_last else right)
        if size > stride[1]:
            yield start, end, stride, is_last
        if is_last:
            break


class AutomaticSpeechRecognitionPipeline(ChunkPipeline):
    """Transcribe audio; parameters and outputs as transformers' pipeline."""

    def __init__(self, model, tokenizer=None, feature_extractor=None, **kwargs):
        self.kind = "ctc" if getattr(model, "head", "ctc") == "ctc" else "seq2seq"
        if tokenizer is None:
            raise ValueError("The automatic-speech-recognition pipeline needs a tokenizer; the checkpoint has no "
                             "tokenizer files. Pass `tokenizer=`.")
        if self.kind == "seq2seq":
            from .speech_seq2seq import Seq2SeqDecoding

            self.seq2seq = Seq2SeqDecoding(model, tokenizer)
        super().__init__(model, tokenizer=tokenizer, feature_extractor=feature_extractor, **kwargs)
        check_extractor(self)

    def _sanitize_parameters(self, chunk_length_s=None, stride_length_s=None, ignore_warning=None,
                             decoder_kwargs=None, return_timestamps=None, return_language=None,
                             generate_kwargs=None, **more_generate_kwargs):
        preprocess, forward, postprocess = {}, {}, {}
        if chunk_length_s is not None:
            if not isinstance(chunk_length_s, (int, float)) or isinstance(chunk_length_s, bool) or chunk_length_s < 0:
                raise ValueError(f"`chunk_length_s` must be a non-negative number of seconds; got {chunk_length_s!r}.")
            preprocess["chunk_length_s"] = chunk_length_s
        if stride_length_s is not None:
            preprocess["stride_length_s"] = stride_length_s
        forward.update(generate_kwargs or {})
        forward.update(more_generate_kwargs)
        if self.kind == "ctc" and forward:
            raise TypeError(f"Unknown parameter(s) for CTC speech recognition: {sorted(forward)}. Accepted: "
                            f"chunk_length_s, stride_length_s, return_timestamps.")
        if return_language is not None:
            if self.kind != "seq2seq":
                raise ValueError("`return_language` needs a Whisper model; CTC models do not predict a language.")
            postprocess["return_language"] = return_language
        if return_timestamps is not None:
            if self.kind == "ctc" and return_timestamps not in ("char", "word"):
                raise ValueError(f"CTC models give `return_timestamps='char'` or 'word'; got {return_timestamps!r}.")
            if self.kind == "seq2seq":
                self.seq2seq.check_timestamps(return_timestamps)
            forward["return_timestamps"] = return_timestamps
            postprocess["return_timestamps"] = return_timestamps
        if self.kind == "seq2seq":
            self.seq2seq.check_generate_kwargs(forward)
        return preprocess, forward, postprocess

    def preprocess(self, inputs, chunk_length_s=0, stride_length_s=None):
        audio = read_input(self, inputs)
        array, extra, fe = audio.array, audio.extra, self.feature_extractor
        if chunk_length_s:
            if stride_length_s is None:
                stride_length_s = chunk_length_s / 6
            if isinstance(stride_length_s, (int, float)):
                stride_length_s = [stride_length_s, stride_length_s]
            align = getattr(self.model.config, "inputs_to_logits_ratio", 1)
            chunk, left, right = (int(round(s * fe.sampling_rate / align) * align)
                                  for s in (chunk_length_s, *stride_length_s))
            if chunk < left + right:
                raise ValueError(f"`chunk_length_s` ({chunk_length_s}) must exceed the left and right strides "
                                 f"together ({stride_length_s}).")
            for start, end, stride, is_last in chunk_windows(len(array), chunk, left, right):
                features = fe(array[start:end])
                features.pop("num_frames", None)
                yield {"is_last": is_last, "stride": stride, **features, **extra}
            return
        if audio.stride is not None and self.kind == "seq2seq":
            raise ValueError("A `stride` in the input dict is only usable with CTC models.")
        features = fe(array, truncation=not (self.kind == "seq2seq" and len(array) > getattr(fe, "n_samples", 0)))
        if audio.stride is not None:
            features.pop("num_frames", None)
            features["stride"] = audio.stride
        yield {"is_last": True, **features, **extra}

    def _forward(self, model_inputs, return_timestamps=False, **generate_kwargs):
        if self.kind == "seq2seq":
            return self.seq2seq.forward(model_inputs, return_timestamps, generate_kwargs)
        logits = self.model(**model_inputs)  # (B, T, V)
        mask = model_inputs.get("attention_mask")
        frames = torch.full((logits.shape[0],), logits.shape[1]) if mask is None \
            else self.model.config.frame_lengths(mask.sum(-1))
        return {"tokens": logits.argmax(-1), "frames": frames}

    def postprocess(self, model_outputs, return_timestamps=None, return_language=None):
        if self.kind == "seq2seq":
            result = self.seq2seq.postprocess(model_outputs, return_timestamps, return_language,
                                              self.feature_extractor.sampling_rate)
        else:
            result = self._ctc_postprocess(model_outputs, return_timestamps)
        extra = defaultdict(list)
        for output in model_outputs:
            for key, value in output.items():
                if key not in _INTERNAL_KEYS:
                    extra[key].append(value)
        return {**result, **extra}

    def _ctc_postprocess(self, model_outputs, return_timestamps):
        ratio = self.model.config.inputs_to_logits_ratio
        pieces = []
        for output in model_outputs:
            tokens = output["tokens"][0, : int(output["frames"][0])].numpy()
            if output.get("stride") is not None:
                total, left, right = rescale_stride(output["stride"], 1 / ratio)
                tokens = tokens[left: total - right]
            pieces.append(tokens)
        ids = np.concatenate(pieces)
        text, offsets = self.tokenizer.decode_offsets(ids)
        if not return_timestamps:
            return {"text": text}
        if return_timestamps == "word":
            offsets = self.tokenizer.word_offsets(offsets)
        rate = self.feature_extractor.sampling_rate
        chunks = [{"text": o[return_timestamps], "timestamp": (o["start_offset"] * ratio / rate,
                                                                o["end_offset"] * ratio / rate)} for o in offsets]
        return {"text": text, "chunks": chunks}


# keys of model outputs that never reach the result (everything else is passed-through input data)
_INTERNAL_KEYS = {"tokens", "frames", "is_last", "stride", "token_timestamps", "logits", "num_frames",
                  "input_features", "input_values", "attention_mask", "segments", "language_ids"}
