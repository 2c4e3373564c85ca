"""The encoder architectures every text-task parity test runs over (a new family adds a row here)."""

ENCODER_ARCHS = ["bert", "roberta"]
