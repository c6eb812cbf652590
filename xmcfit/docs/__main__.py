"""`python -m xmcfit.docs`: print the accuracy-cost document the planner's reasons cite."""

from xmcfit.docs import read_doc

print(read_doc(), end="")
