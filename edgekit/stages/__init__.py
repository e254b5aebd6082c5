"""The build stages, one module each; ``edgekit.pipeline`` composes them."""
