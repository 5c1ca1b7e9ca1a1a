"""Version of the SGLang release this CPU STAND-IN imitates (not the real engine, no model).

The stand-in copies the command line and HTTP contract of SGLang 0.5.23; it
does not contain any of SGLang's inference code.
"""

__version__ = "0.5.23"
__version_tuple__ = (0, 5, 23)
