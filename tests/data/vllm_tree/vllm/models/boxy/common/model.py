from vllm.model_executor.models import interfaces


class BoxyForConditionalGeneration(interfaces.SupportsEncoderCudaGraph):
    def get_encoder_cudagraph_config(self):
        return None

    def get_encoder_cudagraph_budget_range(self, config):
        return (16, 256)

    def get_encoder_cudagraph_item_specs(self, kwargs):
        return []

    def prepare_encoder_cudagraph_capture_inputs(self, budget, items):
        return None
