"""Entry point for ``python -m ollama_emulator``."""

import sys

from ollama_emulator.cli import main

sys.exit(main())
