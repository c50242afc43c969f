"""The web UI: ``torchdiffusion serve`` (Gradio app in :mod:`.app`) over a web-free
:class:`~.backend.Backend` (limits, request queue, PNG parameters), so everything the page
does is also testable from Python. Gradio is the optional ``ui`` extra."""
from torchdiffusion.ui.backend import Backend, GenerateRequest
from torchdiffusion.ui.limits import UILimits
from torchdiffusion.ui.models import ModelLibrary
from torchdiffusion.ui.png_info import GenerationParams, format_parameters, parse_parameters, read_parameters

__all__ = ["Backend", "GenerateRequest", "UILimits", "ModelLibrary", "GenerationParams", "format_parameters",
           "parse_parameters", "read_parameters"]
