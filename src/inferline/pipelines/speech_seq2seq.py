"""Whisper-style decoding for the speech-recognition pipeline, as data handed to the generation engine.

The prompt is <|startoftranscript|> [language, task] <|notimestamps|> (language and task only for
multilingual checkpoints; an English-only one never detects a language); suppress / begin-suppress
tokens come from the checkpoint's generation config. Everything is read from generation_config.json
keys (lang_to_id, task_to_id, no_timestamps_token_id, is_multilingual), never from a model type.
"""

from __future__ import annotations

import json

import torch
import torch.nn.functional as F

from ..generation import generate
from ..generation.probe import CrossAttentionProbe
from ..generation.logits import timestamp_rules
from ..processing.whisper_timing import token_timestamps
from ..processing.whisper_transcript import transcript
from .generation_defaults import GenerationDefaults

_WHISPER_KEYS = ("language", "task")


class Seq2SeqDecoding(GenerationDefaults):
    # transformers' ASR pipeline defaults, used where the checkpoint sets nothing
    default_generation = {"max_new_tokens": 256, "num_beams": 5}

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer = model, tokenizer
        self.init_generation(model, tokenizer, "automatic-speech-recognition")
        folder = getattr(model, "checkpoint_dir", None)
        path = folder / "generation_config.json" if folder is not None else None
        self.settings = json.loads(path.read_text()) if path is not None and path.is_file() else {}
        self.multilingual = bool(self.settings.get("is_multilingual", False))
        self.lang_to_id = self.settings.get("lang_to_id") or {}
        self.task_to_id = self.settings.get("task_to_id") or {}
        cfg = model.config
        # seconds per timestamp step: the window (30 s) over the encoder positions (1500)
        self.time_precision = 30.0 / getattr(cfg, "max_source_positions", 1500)

    def check_timestamps(self, value) -> None:
        if value == "char":
            raise ValueError("Whisper cannot return 'char' timestamps; use return_timestamps=True or 'word'.")
        if value == "word" and not self.settings.get("alignment_heads"):
            raise ValueError("return_timestamps='word' needs the checkpoint's `alignment_heads` (generation config), "
                             "the cross-attention heads that follow the audio; this checkpoint has none.")
        if value and "no_timestamps_token_id" not in self.settings:
            raise ValueError("This checkpoint's generation config has no no_timestamps_token_id, so it cannot "
                             "predict timestamps.")

    def check_generate_kwargs(self, kwargs: dict) -> None:
        if kwargs.get("task") not in (None, *self.task_to_id):
            raise ValueError(f"`task` must be one of {sorted(self.task_to_id) or ['transcribe']}; got {kwargs['task']!r}.")
        if kwargs.get("language") is not None and not self.multilingual:
            raise ValueError("This Whisper checkpoint is English-only; it takes no `language`.")
        if kwargs.get("language") is not None:
            self._language_id(kwargs["language"])

    def _language_id(self, language: str) -> int:
        key = language if language.startswith("<|") else f"<|{language.lower()}|>"
        if key not in self.lang_to_id:
            from ..processing.whisper_languages import LANGUAGES

            code = {name: code for code, name in LANGUAGES.items()}.get(language.lower())
            key = f"<|{code}|>" if code else key
        if key not in self.lang_to_id:
            raise ValueError(f"Unknown `language` {language!r}; accepted: codes such as 'en', names such as "
                             f"'english', or tokens such as '<|en|>' of this checkpoint.")
        return self.lang_to_id[key]

    def _detect_language(self, features: torch.Tensor) -> torch.Tensor:
        """(B,) the most likely language token of each row, from one decoder step after <|startoftranscript|>."""
        model = self.model
        start = torch.full((features.shape[0], 1), self.generation_config.decoder_start_token_id,
                           dtype=torch.long, device=features.device)
        logits = model.decode(start, model.encode(features))[:, -1].float()  # (B, V)
        ids = torch.tensor(sorted(self.lang_to_id.values()), device=features.device)
        return ids[logits[:, ids].argmax(-1)]

    def forward(self, model_inputs: dict, return_timestamps, generate_kwargs: dict) -> dict:
        kwargs = dict(generate_kwargs)
        language, task = kwargs.pop("language", None), kwargs.pop("task", None)
        kwargs.pop("return_timestamps", None)
        config = self.resolve_generation_config(kwargs)
        features = model_inputs["input_features"]
        B = features.shape[0]
        start = torch.full((B, 1), config.decoder_start_token_id, dtype=torch.long, device=features.device)
        parts = [start]
        if self.multilingual:
            lang = torch.full((B, 1), self._language_id(language), device=features.device, dtype=torch.long) \
                if language is not None else self._detect_language(features)[:, None]
            parts += [lang, torch.full((B, 1), self.task_to_id[task or "transcribe"], dtype=torch.long,
                                       device=features.device)]
        no_timestamps = self.settings["no_timestamps_token_id"]
        rules = None
        if return_timestamps:
            rules = [timestamp_rules(no_timestamps, config.eos_ids[0], len(parts),
                                     self.settings.get("max_initial_timestamp_index"))]
        else:
            parts.append(torch.full((B, 1), no_timestamps, dtype=torch.long, device=features.device))
        prompt = torch.cat(parts, dim=1)
        probe = CrossAttentionProbe(self.settings["alignment_heads"]) if return_timestamps == "word" else None
        tokens = generate(self.model, features, None, config, decoder_prompt=prompt, logits_processors=rules,
                          attention_probe=probe)
        out = {"tokens": tokens[:, prompt.shape[1]:]}
        if probe is not None:
            out["token_timestamps"] = self._token_timestamps(probe, out["tokens"], prompt.shape[1], config,
                                                             model_inputs.get("attention_mask"))
        if self.multilingual:  # the language token leads, so the transcript knows the language
            out["tokens"] = torch.cat([prompt[:, 1:2], out["tokens"]], dim=1)
            if probe is not None:
                out["token_timestamps"] = F.pad(out["token_timestamps"], (1, 0))
        return out

    def _token_timestamps(self, probe, generated: torch.Tensor, prompt_length: int, config, attention_mask
                          ) -> torch.Tensor:
        """(N, T) seconds per generated token of each row, each row as if decoded alone (padding repeats its
        last time): the tokens up to its first EOS, or its beam's kept length."""
        rows = []
        for row, ids in enumerate(generated.tolist()):
            if probe.sources is not None:
                count = int((probe.sources[row] >= 0).sum())
            else:
                ends = [i for i, t in enumerate(ids) if t in (config.eos_ids or ())]
                count = ends[0] + 1 if ends else len(ids)
            frames = int(attention_mask[row].sum()) if attention_mask is not None else None
            times = token_timestamps(probe.weights(row, count), prompt_length, count, frames,
                                     getattr(self.model.config, "median_filter_width", 7))
            rows.append(F.pad(times, (0, len(ids) - len(times)), value=float(times[-1]) if len(times) else 0.0))
        return torch.stack(rows)

    def postprocess(self, model_outputs: list, return_timestamps, return_language, sampling_rate: int) -> dict:
        windows = []
        for output in model_outputs:
            window = {"tokens": output["tokens"]}
            if "token_timestamps" in output:
                window["token_timestamps"] = output["token_timestamps"]
            if output.get("stride") is not None:
                window["stride"] = tuple(v / sampling_rate for v in output["stride"])
            windows.append(window)
        text, optional = transcript(self.tokenizer, windows, return_timestamps, return_language, self.time_precision,
                                    language_ids=self.lang_to_id.values())
        return {"text": text, **optional}
