"""Training losses, one per module: ``next_token``, ``pooling``, ``alignment``, ``reconstruction``, ``prefix``.

Nothing is imported here on purpose: ``reconstruction`` pulls in diffusers, and code that only needs
``next_token_loss`` should not pay for it. Import from the submodules.
"""
