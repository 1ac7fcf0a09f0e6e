"""``python -m hwsim`` runs the command line."""

from hwsim.cli import main

main()
