"""One module per command: its entry point takes the composed, checked config."""
