"""vale: a user-space learning Ethernet switch for Linux (netmap's VALE, in Python and Cython)."""

__version__ = "0.1.0"
