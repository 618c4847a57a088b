"""The `omniforge` command line: one module per command group, all calling the Service."""
