"""The built-in view: `thinkmeter serve` answers it at /ui; `thinkmeter report --html` writes it to a file."""
