"""The ``bench`` command line: argument parsing and printing (the work is done by the engine and reporting)."""
