"""idnode: an industrial internet identifier node speaking the Handle protocol."""

__version__ = "0.1.0"
__all__ = ["__version__"]
