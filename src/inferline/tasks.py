"""The task registry: every task name and alias of transformers' pipeline(), as data.

A `TaskSpec` says which pipeline class serves a task (a dotted path, imported only when the task is
used, so `import inferline` stays fast), which model head it needs, and the default checkpoint and
revision transformers 4.57.6 uses. Users add their own tasks through `PIPELINE_REGISTRY`.
"""

from __future__ import annotations

import difflib
import importlib
import re
import warnings
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping


@dataclass(frozen=True)
class TaskSpec:
    """One task: its pipeline class, the model head it needs and its default checkpoint."""

    name: str
    pipeline_class: str | type | None  # dotted path, a class, or None = not implemented yet
    heads: tuple[str, ...]  # model heads tried in order ("sequence-classification", ...)
    default_model: str | None = None
    default_revision: str | None = None
    type: str = "text"
    # Extra defaults keyed by task options, e.g. translation's (src, tgt) language pair.
    option_defaults: Mapping = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "heads", tuple(self.heads))
        object.__setattr__(self, "option_defaults", MappingProxyType(dict(self.option_defaults)))  # read-only

    def resolve_class(self) -> type:
        """Import and return the pipeline class; raise if the task has none yet."""
        if self.pipeline_class is None:
            raise NotImplementedError(
                f"The task {self.name!r} is part of the transformers pipeline system and is registered in "
                f"inferline, but its pipeline is not implemented yet. Implemented tasks: "
                f"{', '.join(PIPELINE_REGISTRY.implemented_tasks())}."
            )
        if isinstance(self.pipeline_class, str):
            module_name, _, class_name = self.pipeline_class.rpartition(".")
            return getattr(importlib.import_module(module_name), class_name)
        return self.pipeline_class


class UnknownTaskError(KeyError, ValueError):
    """Raised for a task name inferline does not know; lists the known ones."""

    def __str__(self) -> str:  # KeyError would repr-quote the message
        return str(self.args[0]) if self.args else ""


_P = "inferline.pipelines."

_SPECS = [
    TaskSpec("feature-extraction", _P + "feature_extraction.FeatureExtractionPipeline", ("base",),
             "distilbert/distilbert-base-cased", "6ea8117", "multimodal"),
    TaskSpec("text-classification", _P + "text_classification.TextClassificationPipeline",
             ("sequence-classification",),
             "distilbert/distilbert-base-uncased-finetuned-sst-2-english", "714eb0f"),
    TaskSpec("token-classification", _P + "token_classification.TokenClassificationPipeline",
             ("token-classification",), "dbmdz/bert-large-cased-finetuned-conll03-english", "4c53496"),
    TaskSpec("question-answering", _P + "question_answering.QuestionAnsweringPipeline",
             ("question-answering",), "distilbert/distilbert-base-cased-distilled-squad", "564e9b5"),
    TaskSpec("fill-mask", _P + "fill_mask.FillMaskPipeline", ("masked-lm",),
             "distilbert/distilroberta-base", "fb53ab8"),
    TaskSpec("zero-shot-classification", _P + "zero_shot_classification.ZeroShotClassificationPipeline",
             ("sequence-classification",), "facebook/bart-large-mnli", "d7645e1"),
    TaskSpec("text-generation", _P + "text_generation.TextGenerationPipeline", ("causal-lm",),
             "openai-community/gpt2", "607a30d"),
    TaskSpec("text2text-generation", _P + "text2text_generation.Text2TextGenerationPipeline", ("seq2seq-lm",),
             "google-t5/t5-base", "a9723ea"),
    TaskSpec("summarization", _P + "text2text_generation.SummarizationPipeline", ("seq2seq-lm",),
             "sshleifer/distilbart-cnn-12-6", "a4f8f3e"),
    TaskSpec("translation", _P + "text2text_generation.TranslationPipeline", ("seq2seq-lm",), None, None, "text",
             {("en", "fr"): ("google-t5/t5-base", "a9723ea"), ("en", "de"): ("google-t5/t5-base", "a9723ea"),
              ("en", "ro"): ("google-t5/t5-base", "a9723ea")}),
    TaskSpec("conversational", _P + "conversational.ConversationalPipeline", ("causal-lm",),
             "microsoft/DialoGPT-medium", "8bada3b"),
    TaskSpec("table-question-answering", _P + "table_question_answering.TableQuestionAnsweringPipeline",
             ("table-question-answering",),
             "google/tapas-base-finetuned-wtq", "e3dde19"),
    TaskSpec("image-classification", _P + "image_classification.ImageClassificationPipeline",
             ("image-classification",), "google/vit-base-patch16-224", "3f49326",
             "image"),
    TaskSpec("image-feature-extraction", _P + "image_feature_extraction.ImageFeatureExtractionPipeline", ("base",),
             "google/vit-base-patch16-224", "3f49326", "image"),
    TaskSpec("image-segmentation", _P + "image_segmentation.ImageSegmentationPipeline",
             ("image-segmentation", "semantic-segmentation"),
             "facebook/detr-resnet-50-panoptic", "d53b52a", "multimodal"),
    TaskSpec("object-detection", _P + "object_detection.ObjectDetectionPipeline", ("object-detection",),
             "facebook/detr-resnet-50", "1d5f47b", "multimodal"),
    TaskSpec("zero-shot-image-classification",
             _P + "zero_shot_image_classification.ZeroShotImageClassificationPipeline",
             ("zero-shot-image-classification",), "openai/clip-vit-base-patch32", "3d74acf", "multimodal"),
    TaskSpec("zero-shot-object-detection", _P + "zero_shot_object_detection.ZeroShotObjectDetectionPipeline",
             ("zero-shot-object-detection",),
             "google/owlvit-base-patch32", "cbc355f", "multimodal"),
    TaskSpec("depth-estimation", _P + "depth_estimation.DepthEstimationPipeline", ("depth-estimation",),
             "Intel/dpt-large", "bc15f29", "image"),
    TaskSpec("image-to-text", _P + "image_to_text.ImageToTextPipeline", ("vision2seq",), "ydshieh/vit-gpt2-coco-en",
             "5bebf1e", "multimodal"),
    TaskSpec("image-text-to-text", None, ("image-text-to-text",),
             "llava-hf/llava-onevision-qwen2-0.5b-ov-hf", "2c9ba3b", "multimodal"),
    TaskSpec("image-to-image", None, ("image-to-image",), "caidas/swin2SR-classical-sr-x2-64", "cee1c92", "image"),
    TaskSpec("audio-classification", _P + "audio_classification.AudioClassificationPipeline",
             ("audio-classification",), "superb/wav2vec2-base-superb-ks",
             "372e048", "audio"),
    TaskSpec("automatic-speech-recognition", _P + "automatic_speech_recognition.AutomaticSpeechRecognitionPipeline",
             ("ctc", "speech-seq2seq"), "facebook/wav2vec2-base-960h",
             "22aad52", "multimodal"),
    TaskSpec("zero-shot-audio-classification", None, ("base",), "laion/clap-htsat-fused", "cca9e28", "multimodal"),
    TaskSpec("text-to-audio", None, ("text-to-waveform",), "suno/bark-small", "1dbd7a1"),
    TaskSpec("visual-question-answering", _P + "visual_question_answering.VisualQuestionAnsweringPipeline",
             ("visual-question-answering",), "dandelin/vilt-b32-finetuned-vqa",
             "d0a1f6a", "multimodal"),
    TaskSpec("document-question-answering",
             _P + "document_question_answering.DocumentQuestionAnsweringPipeline", ("document-question-answering",),
             "impira/layoutlm-document-qa", "beed3c4", "multimodal"),
    TaskSpec("video-classification", None, ("video-classification",),
             "MCG-NJU/videomae-base-finetuned-kinetics", "488eb9a", "video"),
    TaskSpec("mask-generation", None, ("mask-generation",), "facebook/sam-vit-huge", "87aecf0", "multimodal"),
    TaskSpec("keypoint-matching", None, ("keypoint-matching",), "magic-leap-community/superglue_outdoor",
             "f4041f8", "image"),
]

TASK_ALIASES = {
    "sentiment-analysis": "text-classification",
    "ner": "token-classification",
    "vqa": "visual-question-answering",
    "text-to-speech": "text-to-audio",
}

_TRANSLATION_RE = re.compile(r"^translation_([A-Za-z_-]+)_to_([A-Za-z_-]+)$")


class PipelineRegistry:
    """Task name → TaskSpec, with aliases; `register_pipeline` adds custom tasks."""

    def __init__(self, specs: list[TaskSpec], aliases: dict[str, str]):
        self.tasks: dict[str, TaskSpec] = {s.name: s for s in specs}
        self.aliases = dict(aliases)
        self._custom: set[str] = set()  # tasks added by register_pipeline

    def get_supported_tasks(self) -> list[str]:
        """Every task name and alias, sorted (as transformers' `get_supported_tasks`)."""
        return sorted({*self.tasks, *self.aliases})

    def implemented_tasks(self) -> list[str]:
        return sorted(n for n, s in self.tasks.items() if s.pipeline_class is not None)

    def check_task(self, task: str) -> tuple[str, TaskSpec, Any]:
        """Normalise a task name or alias → (name, spec, options); options is (src, tgt) for translation."""
        if not isinstance(task, str):
            raise TypeError(f"`task` must be a string such as 'text-classification'; got {type(task).__name__}.")
        task = self.aliases.get(task, task)
        if task in self.tasks:
            return task, self.tasks[task], None
        match = _TRANSLATION_RE.match(task)
        if match:
            return task, self.tasks["translation"], (match.group(1), match.group(2))
        close = difflib.get_close_matches(task, self.get_supported_tasks(), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownTaskError(
            f"Unknown task {task!r}.{hint} Available tasks: {', '.join(self.get_supported_tasks())} "
            f"and 'translation_XX_to_YY'."
        )

    def register_pipeline(self, task: str, pipeline_class: type, pt_model: Any = None, default: Any = None,
                          type: str | None = None, heads: tuple[str, ...] | None = None) -> None:
        """Register a custom task: `pipeline(task)` then builds `pipeline_class`.

        `default` may be a model id, an (id, revision) tuple, or transformers' {"model": ...} form.
        `heads` names the inferline model heads to load ("sequence-classification", "base", ...);
        `pt_model` is accepted for transformers compatibility and used as heads when it is a str/tuple of str.
        """
        if task in self.tasks:
            warnings.warn(f"Task {task!r} is already registered; overwriting its pipeline.", UserWarning)
        model, revision = _parse_default(default)
        if heads is None:
            heads = tuple(pt_model) if isinstance(pt_model, (tuple, list)) and all(
                isinstance(h, str) for h in pt_model) else (pt_model,) if isinstance(pt_model, str) else ("base",)
        # The class is left as it is (transformers sets an attribute on it): one class may serve several tasks.
        self.tasks[task] = TaskSpec(task, pipeline_class, tuple(heads), model, revision, type or "text")
        self._custom.add(task)

    def is_custom(self, task: str) -> bool:
        """Whether `task` was added with register_pipeline (save_pretrained records those in config.json)."""
        return task in self._custom

    def to_dict(self) -> dict[str, TaskSpec]:
        return dict(self.tasks)


def _parse_default(default: Any) -> tuple[str | None, str | None]:
    if default is None:
        return None, None
    if isinstance(default, dict):
        default = default.get("model", default)
        if isinstance(default, dict):
            default = default.get("pt")
    if isinstance(default, str):
        return default, None
    if isinstance(default, (tuple, list)) and len(default) == 2:
        return default[0], default[1]
    raise ValueError(f"`default` must be a model id, an (id, revision) tuple or {{'model': ...}}; got {default!r}.")


PIPELINE_REGISTRY = PipelineRegistry(_SPECS, TASK_ALIASES)
SUPPORTED_TASKS = MappingProxyType(PIPELINE_REGISTRY.tasks)  # a read-only view; register_pipeline adds tasks


def get_supported_tasks() -> list[str]:
    return PIPELINE_REGISTRY.get_supported_tasks()


def default_model_for(spec: TaskSpec, options: Any) -> tuple[str, str | None]:
    """The default (model id, revision) for a task, or a ValueError saying there is none."""
    if spec.name == "translation":
        if options in spec.option_defaults:
            return spec.option_defaults[options]
        raise ValueError(
            f"No default model for translation {options}; pass `model=`. Defaults exist for: "
            f"{', '.join(f'translation_{s}_to_{t}' for s, t in spec.option_defaults)}."
        )
    if spec.default_model is None:
        raise ValueError(f"The task {spec.name!r} has no default model; pass `model=`.")
    return spec.default_model, spec.default_revision


# Architecture class-name endings → the task transformers would pick for them.
_ARCHITECTURE_TASKS = (
    ("Wav2Vec2ForSequenceClassification", "audio-classification"),
    ("HubertForSequenceClassification", "audio-classification"),
    ("WhisperForConditionalGeneration", "automatic-speech-recognition"),
    ("ViltForQuestionAnswering", "visual-question-answering"),
    ("ForSequenceClassification", "text-classification"),
    ("ForTokenClassification", "token-classification"),
    ("TapasForQuestionAnswering", "table-question-answering"),
    ("ForQuestionAnswering", "question-answering"),
    ("ForMaskedLM", "fill-mask"),
    ("ForCausalLM", "text-generation"),
    ("LMHeadModel", "text-generation"),
    ("ForConditionalGeneration", "text2text-generation"),
    ("ForImageClassification", "image-classification"),
    ("OwlViTForObjectDetection", "zero-shot-object-detection"),
    ("ForObjectDetection", "object-detection"),
    ("ForDepthEstimation", "depth-estimation"),
    ("ForSemanticSegmentation", "image-segmentation"),
    ("ForSegmentation", "image-segmentation"),
    ("ForCTC", "automatic-speech-recognition"),
    ("ForAudioClassification", "audio-classification"),
    ("Model", "feature-extraction"),
)


def task_from_config(config: dict, folder=None) -> str:
    """Infer the task from a checkpoint's config.json `architectures` (offline, unlike the hub's pipeline_tag)."""
    custom = config.get("custom_pipelines") or {}
    if len(custom) == 1:
        name = next(iter(custom))
        if name in PIPELINE_REGISTRY.tasks:
            return name
    for architecture in config.get("architectures") or []:
        for suffix, task in _ARCHITECTURE_TASKS:
            if architecture.endswith(suffix):
                return task
    raise ValueError(
        f"Cannot infer the task for the model at {str(folder)!r}: its config.json has architectures "
        f"{config.get('architectures')!r}. Pass `task=`, one of: {', '.join(get_supported_tasks())}.")
