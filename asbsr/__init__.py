"""asbsr: arbitrary-scale blind super-resolution with dual degradation representations and
cycle-consistency (WACV 2024), reproduced for learning."""

__version__ = "0.1.0"
