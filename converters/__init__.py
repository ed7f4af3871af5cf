"""One converter per deployment target, all behind ``converters.base.Target``."""
