"""Allow ``python -m shareddisk``."""

from shareddisk.cli import main

if __name__ == "__main__":
    main()
