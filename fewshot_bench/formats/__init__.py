"""Built-in output formats of reports (console, Markdown, LaTeX, CSV, JSON); one module each."""
