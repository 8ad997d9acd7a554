"""valectl, the command line of vale (installed as the package vale.cli)."""
