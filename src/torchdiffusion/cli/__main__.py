"""``python -m torchdiffusion.cli`` (what torchrun runs)."""
import sys

from torchdiffusion.cli.main import main

sys.exit(main())
