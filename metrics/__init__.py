"""Energy from readings and the rolling PUE family (ISO/IEC 30134)."""
