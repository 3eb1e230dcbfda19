from .common.model import BoxyForConditionalGeneration

__all__ = ["BoxyForConditionalGeneration"]
