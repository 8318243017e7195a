"""``python -m phenotyping fit -c configs/mtcnn.yaml``: the same as the ``lightning`` script."""

from phenotyping.cli import main

main()
