"""`python -m pipectl`."""

from .cli import main

main()
