"""``python -m mlarray``: the same command line as the ``mlarray`` script."""

from mlarray._launch import main

if __name__ == "__main__":
    main()
