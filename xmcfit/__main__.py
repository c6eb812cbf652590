"""`python -m xmcfit ...`: the command line, as torchrun starts it (`torchrun ... -m xmcfit train ...`)."""

from xmcfit.cli import main

main()
