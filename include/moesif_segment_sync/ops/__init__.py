"""Operations: the command line (``cli``: run history, the doctor) and the ``doctor``'s
checks of the connections against the real accounts."""

from . import doctor

__all__ = ["cli", "doctor"]
