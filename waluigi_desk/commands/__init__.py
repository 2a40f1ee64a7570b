"""One module per subcommand; see waluigi_desk/cli.py."""
