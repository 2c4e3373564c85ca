"""The one architecture table every parity and model test runs over (a new family adds a row here, and its
builder row in tests/fixtures/checkpoints.py)."""

ENCODER_ARCHS = ["bert", "roberta", "distilbert", "electra", "deberta-v2", "xlm-roberta", "camembert"]
DECODER_ARCHS = ["gpt2", "llama", "mistral", "qwen2", "qwen3", "phi3"]
SEQ2SEQ_ARCHS = ["t5", "t5-gated", "mt5", "bart", "mbart", "marian"]
