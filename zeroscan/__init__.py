"""zeroscan: the command-line shell and settings around the scanner library."""
