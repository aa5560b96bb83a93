"""Figures the fault tests collect, printed in the summary of the run."""

LINES: list[str] = []
