"""``python -m fmnist fit --trainer.max_epochs 5``: see ``python -m fmnist --help``."""

from fmnist.main import main

if __name__ == "__main__":
    main()
