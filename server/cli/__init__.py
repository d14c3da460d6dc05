"""The `osteorisk` command line: one module per subcommand, dispatched by `server.cli.main`."""
