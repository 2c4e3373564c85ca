"""Words and their boxes on a page image, read with Tesseract (`pytesseract` + the `tesseract` program).

The words and boxes equal those of transformers 4.57.6's OCR step (`apply_tesseract` of its LayoutLMv2/v3
image processors and of the document-question-answering pipeline): Tesseract's word entries with blank
text dropped, each box (left, top, left + width, top + height) scaled to 0–1000 of the image's width and
height and truncated to an int.
"""

from __future__ import annotations

import shutil

INSTALL_HINT = ('pip install "inferline[ocr]" (pytesseract) and the Tesseract program itself '
                '(Debian/Ubuntu: apt-get install tesseract-ocr; macOS: brew install tesseract)')


def _pytesseract():
    try:
        import pytesseract
    except ImportError:
        raise ImportError(f"Reading words from a document image needs Tesseract OCR: {INSTALL_HINT}. Or pass "
                          f"`word_boxes` to skip OCR.") from None
    if shutil.which(pytesseract.pytesseract.tesseract_cmd) is None:
        raise OSError(f"The `tesseract` program ({pytesseract.pytesseract.tesseract_cmd!r}) was not found on PATH; "
                      f"reading words from a document image needs it: {INSTALL_HINT}. Or pass `word_boxes` to "
                      f"skip OCR.")
    return pytesseract


def normalize_box(box: tuple[int, int, int, int], width: int, height: int) -> list[int]:
    """Pixel box → 0–1000 of the image's size (truncated, as transformers' normalize_box)."""
    return [int(1000 * (box[0] / width)), int(1000 * (box[1] / height)),
            int(1000 * (box[2] / width)), int(1000 * (box[3] / height))]


def read_words(image, lang: str | None = None, tesseract_config: str | None = "") -> tuple[list[str], list[list[int]]]:
    """An RGB PIL image → (words, boxes normalised to 0–1000)."""
    pytesseract = _pytesseract()
    data = pytesseract.image_to_data(image, lang=lang, output_type="dict", config=tesseract_config or "")
    width, height = image.size
    words, boxes = [], []
    for text, left, top, w, h in zip(data["text"], data["left"], data["top"], data["width"], data["height"]):
        if text.strip():
            words.append(text)
            boxes.append(normalize_box((left, top, left + w, top + h), width, height))
    return words, boxes
