import sys

from harness.cli import main

if __name__ == "__main__":  # worker processes (spawn) import this module again: they must not run the command
    sys.exit(main())
