"""Whisper language codes → the names transformers' Whisper tokenizer gives them (the commonest ones;
other codes are reported as their code)."""

LANGUAGES = {
    "en": "english", "zh": "chinese", "de": "german", "es": "spanish", "ru": "russian", "ko": "korean",
    "fr": "french", "ja": "japanese", "pt": "portuguese", "tr": "turkish", "pl": "polish", "ca": "catalan",
    "nl": "dutch", "ar": "arabic", "sv": "swedish", "it": "italian", "id": "indonesian", "hi": "hindi",
    "fi": "finnish", "vi": "vietnamese", "he": "hebrew", "uk": "ukrainian", "el": "greek", "ms": "malay",
    "cs": "czech", "ro": "romanian", "da": "danish", "hu": "hungarian", "ta": "tamil", "no": "norwegian",
    "th": "thai", "ur": "urdu", "hr": "croatian", "bg": "bulgarian", "lt": "lithuanian", "la": "latin",
    "cy": "welsh", "sk": "slovak", "fa": "persian", "lv": "latvian", "sr": "serbian", "az": "azerbaijani",
    "sl": "slovenian", "et": "estonian", "mk": "macedonian", "is": "icelandic", "hy": "armenian",
}
