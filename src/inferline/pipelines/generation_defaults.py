"""Generation defaults: the config a generating pipeline starts from, and how one call resolves it.

Shared by text-generation (and conversational), text2text-generation, summarization and translation.
Precedence, lowest first:
1. the pipeline's `default_generation` (e.g. max_new_tokens=256), used only for what the checkpoint
   leaves unset (a checkpoint max_length counts as setting the length);
2. the checkpoint's own settings: generation_config.json (else config.json's generation keys), then
   config.json's legacy `task_specific_params[task]` (whose `prefix`, e.g. T5's "summarize: ", is the
   pipeline's input prefix);
3. construction kwargs, then call kwargs. A max_length given there is honoured: it drops a max_new_tokens
   that only the pipeline defaults set (an explicit max_new_tokens still wins over max_length).

transformers 4.57.6 lets its pipeline defaults win over a checkpoint's settings and over a call-time
max_length, contradicting its documentation; we follow the documentation. A call's own
`generation_config=` replaces the pipeline's, with the checkpoint's settings filling what it leaves at
the global defaults (as `generate` does) and no pipeline defaults.
"""

from __future__ import annotations

import dataclasses

from ..generation import GenerationConfig

GENERATION_PARAMETERS = frozenset(f.name for f in dataclasses.fields(GenerationConfig)) - {"explicit"}
GENERATE_EXTRAS = frozenset({"streamer", "generation_config", "use_cache"})  # generate() arguments beyond the config


def check_generate_extras(kwargs: dict) -> None:
    """The generate() arguments beyond the config, checked at call time rather than inside a batch."""
    streamer = kwargs.get("streamer")
    if streamer is not None and not all(callable(getattr(streamer, m, None)) for m in ("put", "end")):
        raise TypeError(f"`streamer` must have put(token_ids) and end() methods (e.g. a TextStreamer); got "
                        f"{type(streamer).__name__}.")
    config = kwargs.get("generation_config")
    if config is not None and not isinstance(config, GenerationConfig):
        raise TypeError(f"`generation_config` must be an inferline GenerationConfig; got {type(config).__name__}.")
    if kwargs.get("use_cache") not in (None, True, False):
        raise TypeError(f"`use_cache` must be a bool; got {kwargs['use_cache']!r}.")


class GenerationDefaults:
    """Mixin for pipelines that call `generate`: sets `generation_config` and `prefix`, resolves each call's config.

    A pipeline sets the class attribute `default_generation`, calls `init_generation(model, tokenizer, task)`
    once, and `resolve_generation_config(kwargs, generation_config)` per call.
    """

    default_generation: dict = {}  # the pipeline's defaults, used only where the checkpoint sets nothing

    def init_generation(self, model, tokenizer, task: str) -> None:
        """Set `generation_config` (checkpoint settings, then pipeline defaults) and the input `prefix`."""
        raw = getattr(getattr(model, "config", None), "raw", None) or {}
        task_params = dict((raw.get("task_specific_params") or {}).get(task) or {})
        self.prefix = task_params.pop("prefix", raw.get("prefix"))
        self._checkpoint_generation = GenerationConfig.for_model(model)
        config = dataclasses.replace(self._checkpoint_generation,
                                     **{k: v for k, v in task_params.items() if k in GENERATION_PARAMETERS})
        self.generation_config, self._defaulted = self._default_generation_config(config, tokenizer)

    def _default_generation_config(self, config: GenerationConfig, tokenizer) -> tuple[GenerationConfig, frozenset]:
        """`config` with the pipeline defaults filled where it is unset, and the names they filled."""
        unset, defaulted = GenerationConfig(), set()
        for name, value in self.default_generation.items():
            model_sets = getattr(config, name) != getattr(unset, name) or (
                name == "max_new_tokens" and config.max_length != unset.max_length)
            if not model_sets:
                config = dataclasses.replace(config, **{name: value})
                defaulted.add(name)
        if config.pad_token_id is None and getattr(tokenizer, "pad_token_id", None) is not None:
            config = dataclasses.replace(config, pad_token_id=tokenizer.pad_token_id)
        return _greedy_if_cold(config), frozenset(defaulted)

    def resolve_generation_config(self, generate_kwargs: dict, generation_config: GenerationConfig | None = None
                                  ) -> GenerationConfig:
        """The config one call generates with: the pipeline's (or the given one), updated by the kwargs."""
        if generation_config is None:
            base, defaulted = self.generation_config, self._defaulted
        elif isinstance(generation_config, GenerationConfig):
            base, defaulted = _fill_unset(generation_config, self._checkpoint_generation), frozenset()
        else:
            raise TypeError(f"`generation_config` must be an inferline GenerationConfig; got "
                            f"{type(generation_config).__name__}.")
        if "max_length" in generate_kwargs and "max_new_tokens" not in generate_kwargs and \
                "max_new_tokens" in defaulted:
            base = dataclasses.replace(base, max_new_tokens=None)  # a given max_length is honoured, as documented
        return base.update(**generate_kwargs)


def _fill_unset(config: GenerationConfig, checkpoint: GenerationConfig) -> GenerationConfig:
    """Settings of `config` still at the global defaults take the checkpoint's value, as `generate` does."""
    unset = GenerationConfig()
    changes = {name: getattr(checkpoint, name) for name in GENERATION_PARAMETERS
               if getattr(config, name) == getattr(unset, name) and getattr(checkpoint, name) != getattr(unset, name)}
    return _greedy_if_cold(dataclasses.replace(config, **changes))


def _greedy_if_cold(config: GenerationConfig) -> GenerationConfig:
    """temperature=0 means greedy decoding (as transformers), not a division by zero."""
    return dataclasses.replace(config, do_sample=False) if config.temperature == 0.0 else config
