"""``python -m torchdiffusion``."""
import sys

from torchdiffusion.cli.main import main

sys.exit(main())
