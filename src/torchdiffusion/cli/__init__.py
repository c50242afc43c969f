"""The ``torchdiffusion`` command line: ``main`` is the entry point (``torchdiffusion.cli:main``)."""
from torchdiffusion.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
