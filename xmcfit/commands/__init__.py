"""One module per CLI command group; each exposes typed command functions that xmcfit.cli registers."""
