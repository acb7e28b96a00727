"""Stand-in for Hugging Face's `spaces` package (the ZeroGPU helper), so apps that `import spaces` start.

On Spaceyard a GPU tier gives the container its GPU for the whole run, so `@spaces.GPU` has nothing
to do: it returns the function unchanged, used bare (`@spaces.GPU`) or with arguments
(`@spaces.GPU(duration=120)`). If the app's requirements install the real package, that one wins:
this directory is added at the end of sys.path.
"""

from collections.abc import Callable
from typing import Any


def GPU(func: Callable[..., Any] | None = None, **_options: Any) -> Any:  # noqa: N802 - the real name
    if callable(func):
        return func
    return lambda f: f


def gradio_auto_wrap(func: Callable[..., Any]) -> Callable[..., Any]:
    """Gradio calls this on every event handler when SYSTEM=spaces; nothing to wrap without ZeroGPU."""
    return func
