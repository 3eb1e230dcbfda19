"""Run encgraph from a checkout: `python cli.py profile --model Qwen2-VL`."""

from encgraph_profiler.cli import main

if __name__ == "__main__":
    main()
