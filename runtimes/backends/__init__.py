"""One module per runtime; each imports its runtime library only when used."""
