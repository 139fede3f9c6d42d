"""What every layer shares: settings, logging with redaction, errors and exit codes, the clock, health
thresholds.
"""
