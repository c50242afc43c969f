"""The web UI: ``torchdiffusion serve`` (Gradio app in :mod:`.app`) over a web-free
:class:`~.backend.Backend` (limits, request queue, PNG parameters), so everything the page
does is also testable from Python. Gradio is the optional ``ui`` extra."""
from .backend import Backend, GenerateRequest
from .limits import UILimits
from .models import ModelLibrary
from .png_info import GenerationParams, format_parameters, parse_parameters, read_parameters

__all__ = ["Backend", "GenerateRequest", "UILimits", "ModelLibrary", "GenerationParams", "format_parameters",
           "parse_parameters", "read_parameters"]
