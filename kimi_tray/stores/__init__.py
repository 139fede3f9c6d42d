"""Files other programs own and our own: the Kimi credential file and its locks, OpenClaw targets, our
state, atomic file I/O. They know no schedule.
"""
