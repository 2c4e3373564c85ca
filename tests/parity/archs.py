"""The encoder architectures every text-task parity test runs over (a new family adds a row here)."""

ENCODER_ARCHS = ["bert", "roberta", "distilbert", "electra", "deberta-v2", "xlm-roberta"]
