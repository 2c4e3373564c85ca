"""The vision architectures each task's parity test runs over (a new family adds a row here)."""

CLASSIFICATION_ARCHS = ["vit", "deit", "deit-distilled", "dinov2", "convnext", "resnet", "resnet-basic", "swin"]
FEATURE_ARCHS = ["vit", "deit", "dinov2", "convnext", "resnet", "swin"]
