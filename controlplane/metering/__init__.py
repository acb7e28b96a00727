"""Metering: usage intervals (the one place hardware-seconds are counted), billing reports, GPU samples, metrics."""
