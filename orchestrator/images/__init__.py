"""IOC images: tags, hardening and builds (`build`), and its helpers: input hashing (`inputs`), the Debian
base (`debian`), the wheelhouse (`wheelhouse`), the build context (`context`).

Only `build` (and the backends) talk to the engine; the helpers run local tools (mmdebstrap, pip) and compute names, and raise `ImageBuildError`.
"""

from __future__ import annotations

from orchestrator.errors import EXIT_BACKEND, IocfleetError


class ImageBuildError(IocfleetError):
    """A step of an image build failed; the message names the step and how to fix it."""

    exit_code = EXIT_BACKEND
