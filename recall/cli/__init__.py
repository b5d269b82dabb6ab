"""The command line: parsing in main.py, one module per command family."""
