"""A fake vllm package for tests/test_vllm_census.py: tiny synthetic classes, not vLLM code."""
