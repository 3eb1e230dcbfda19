_MULTIMODAL = {
    "ToyForConditionalGeneration": ("toy", "ToyForConditionalGeneration"),
    "ToyChildForCausalLM": ("toy_child", "ToyChild"),
    "ToyPicker": ("toy_child", "ToyPicker"),
    "BoxyForConditionalGeneration": ("vllm.models.boxy", "BoxyForConditionalGeneration"),
    "PlainModel": ("plain", "PlainModel"),
}
_BY_VERSION = {"ToyForConditionalGeneration": "0.0.1"}
