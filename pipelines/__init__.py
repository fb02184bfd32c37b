"""PyFlink jobs: the scanner graph (`scanner_job`), its thin operators (`operators`) and the
plain-Python steps those operators call (`steps`)."""
