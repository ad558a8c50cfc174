"""jeisson: demand response for groups of houses, over Twisted."""

__version__ = "0.1.0"
