"""Makes tests/standin a package so pytest does not put this folder (and its `sglang` stub) on sys.path."""
