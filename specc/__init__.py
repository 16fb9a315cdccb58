"""specc: compile a behavioural model spec into a midtraining corpus."""

__version__ = "0.1.0"
