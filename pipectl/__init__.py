"""pipectl: sales-pipeline automation driven by a cron tick."""

__version__ = "0.1.0"
