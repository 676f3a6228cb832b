"""textbooklm: textbook-quality data and small phi models (phi-1 / phi-1.5 recipe)."""

import os as _os

# Our own rich progress bars report every long step; the Hugging Face libraries' per-file tqdm bars
# ("Loading weights ...") would interleave with them, so they are off unless the user asks for them.
_os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

__version__ = "0.1.0"
