"""The interactive shell (`recall repl`)."""
