"""``python -m rankfusion``: the command line, also the module torchrun starts (``torchrun -m rankfusion``)."""

from .cli import main

if __name__ == "__main__":
    main(prog_name="rankfusion")
