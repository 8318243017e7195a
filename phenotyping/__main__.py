"""``python -m kinpath.phenotyping fit -c configs/mtcnn.yaml``: the same as the ``lightning`` script."""

import sys

from kinpath.phenotyping.cli import main

sys.argv[0] = "python -m kinpath.phenotyping"  # argparse's usage line names the program after it
main()
