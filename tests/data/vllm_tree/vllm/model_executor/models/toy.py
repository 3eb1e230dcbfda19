from .interfaces import SupportsEncoderCudaGraph


class ToyBase:
    def get_encoder_cudagraph_budget_range(self, config):
        return (64, 1024)


class ToyForConditionalGeneration(ToyBase, SupportsEncoderCudaGraph):
    def get_encoder_cudagraph_item_specs(self, kwargs):
        return []

    def prepare_encoder_cudagraph_capture_inputs(self, budget, items):
        return None
